package main

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// sessionTemplate is a real Symfony 5.4 session written by PHP (a copy of
// phpsession/testdata/upt_inmemory_roles.sess): an authenticated
// UsernamePasswordToken of firewall "main" for the InMemoryUser "alice",
// serialize_handler php, 1074 bytes.
//
//go:embed testdata/session.sess
var sessionTemplate []byte

// sessionID is the session id of client i. It is a valid PHP session id
// (letters and digits only).
func sessionID(i int) string { return "wsgbench" + strconv.Itoa(i) }

// userName is the user identifier written into client i's session.
func userName(i int) string { return "bench" + strconv.Itoa(i) }

// sessionFor returns the template session with its user identifier replaced
// by user. The token is a serialized string inside the session
// (s:<len>:"O:74:...";), so both the username's and the token's length
// prefixes are rewritten.
func sessionFor(tmpl []byte, user string) ([]byte, error) {
	const key = `s:14:"_security_main";s:`
	i := bytes.Index(tmpl, []byte(key))
	if i < 0 {
		return nil, errors.New("session template: no _security_main token")
	}
	lenStart := i + len(key)
	colon := bytes.IndexByte(tmpl[lenStart:], ':')
	if colon < 0 {
		return nil, errors.New("session template: bad token length")
	}
	n, err := strconv.Atoi(string(tmpl[lenStart : lenStart+colon]))
	if err != nil {
		return nil, fmt.Errorf("session template: token length: %w", err)
	}
	innerStart := lenStart + colon + 2 // past `:"`
	innerEnd := innerStart + n
	if innerEnd+2 > len(tmpl) || string(tmpl[innerEnd:innerEnd+2]) != `";` {
		return nil, errors.New("session template: token length does not match")
	}
	inner := tmpl[innerStart:innerEnd]
	const oldUser = "\x00username\";s:5:\"alice\";"
	if bytes.Count(inner, []byte(oldUser)) != 1 {
		return nil, errors.New("session template: username not found exactly once")
	}
	newInner := bytes.Replace(inner, []byte(oldUser),
		[]byte("\x00username\";s:"+strconv.Itoa(len(user))+":\""+user+"\";"), 1)

	var out bytes.Buffer
	out.Grow(len(tmpl) + len(user))
	out.Write(tmpl[:lenStart])
	out.WriteString(strconv.Itoa(len(newInner)))
	out.WriteString(`:"`)
	out.Write(newInner)
	out.Write(tmpl[innerEnd:])
	return out.Bytes(), nil
}

// seedSessions writes sess_<sessionID(i)> for i in [0, n) into dir, each
// for user bench<i>, with mode 0600 as PHP writes them. Existing files are
// overwritten (which also refreshes their mtime, so gc_maxlifetime does not
// expire them).
func seedSessions(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		data, err := sessionFor(sessionTemplate, userName(i))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "sess_"+sessionID(i)), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
