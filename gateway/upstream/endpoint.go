package upstream

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/wsgate/wsgate/gateway/config"
)

// newEndpoint checks what New and NewEvents take alike: the URL requests
// are POSTed to, the secret that signs them and the headers they forward.
// Errors are *config.Error naming the field; the secret is never quoted,
// nor a password in the URL.
func newEndpoint(rawURL string, secret []byte, forward []string) (*url.URL, *signer, error) {
	u, err := checkEndpoint(rawURL)
	if err != nil {
		return nil, nil, err
	}
	if len(secret) < MinSecretBytes {
		return nil, nil, &config.Error{Key: "secret", Reason: fmt.Sprintf("is %d bytes, want at least %d", len(secret), MinSecretBytes)}
	}
	sg, err := newSigner(secret, forward)
	if err != nil {
		return nil, nil, &config.Error{Key: "forward_headers", Reason: err.Error()}
	}
	return u, sg, nil
}

// checkEndpoint applies the URL rules: http or https, a host, no
// credentials (the signature authenticates) and no fragment.
func checkEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &config.Error{Key: "url", Reason: err.Error()}
	}
	var reason string
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		reason = fmt.Sprintf("scheme must be http or https, got %q", u.Scheme)
	case u.Host == "":
		reason = "has no host"
	case u.User != nil:
		reason = "must not carry credentials; requests are authenticated by the signature"
	case u.Fragment != "":
		reason = "must not have a fragment"
	default:
		return u, nil
	}
	return nil, &config.Error{Key: "url", Value: u.Redacted(), Reason: reason}
}

// newClient is the client of an upstream or of the events that were given
// none: a keep-alive pool of maxIdle connections (NewTransport) that does
// not follow redirects: a redirect is the reply (not 2xx), the signed
// request is not carried to another URL.
func newClient(maxIdle int) *http.Client {
	return &http.Client{
		Transport: NewTransport(maxIdle),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
