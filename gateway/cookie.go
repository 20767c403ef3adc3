package gateway

import "bytes"

// cookieValue finds the first cookie called name in a Cookie header value
// ("a=1; PHPSESSID=abc"), without allocating. A value in double quotes is
// unquoted, as browsers may send it so.
func cookieValue(header, name []byte) ([]byte, bool) {
	for len(header) > 0 {
		var pair []byte
		if i := bytes.IndexByte(header, ';'); i >= 0 {
			pair, header = header[:i], header[i+1:]
		} else {
			pair, header = header, nil
		}
		pair = bytes.TrimSpace(pair)
		k, v, ok := bytes.Cut(pair, []byte("="))
		if !ok || !bytes.Equal(bytes.TrimSpace(k), name) {
			continue
		}
		v = bytes.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return nil, false
}
