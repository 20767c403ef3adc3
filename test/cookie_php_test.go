package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/test/testenv"
)

// cookieScript prints what PHP's $_COOKIE holds for PHPSESSID: a string,
// or null when it is absent or an array (which PHP's session module
// ignores).
const cookieScript = `<?php
$v = $_COOKIE['PHPSESSID'] ?? null;
header('Content-Type: application/json');
echo json_encode(['string' => is_string($v), 'value' => is_string($v) ? base64_encode($v) : null]);
`

// The gateway reads the session cookie as PHP does: for each odd Cookie
// header, the id the gateway would look up is the one PHP's $_COOKIE holds
// (php -S, one process for the whole table), or both have none.
func TestCookieParsingMatchesPHP(t *testing.T) {
	php := testenv.PHP(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "cookie.php")
	if err := os.WriteFile(script, []byte(cookieScript), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(php, "-n", "-d", "display_errors=0", "-d", "display_startup_errors=0", "-S", addr, script) // -n: php.ini defaults (max_input_vars 1000)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("php -S did not start listening")
		}
	}
	long := strings.Repeat("a", 4000)
	for _, header := range []string{
		"PHPSESSID=abc",
		"a=1; PHPSESSID=abc; b=2",
		"a=1;PHPSESSID=abc",
		"PHPSESSID=first; PHPSESSID=second",
		"PHPSESSID=; PHPSESSID=second",
		`PHPSESSID="quoted"`,
		`PHPSESSID="quoted`,
		"PHPSESSID=abc ; x=1",
		"PHPSESSID=a b",
		"PHPSESSID=abc\t; x=1",
		" \t PHPSESSID=lead",
		"PHPSESSID =abc",
		"PHPSESSID =abc; PHPSESSID=def",
		"PHPSESSID",
		"PHPSESSID=",
		"=x; PHPSESSID=y",
		";;; ;PHPSESSID=x;;",
		"PHPSESSID=a%41b+c%2",
		"PHPSESSID=%zz",
		"PHP%53ESSID=abc",
		"PHP.SESSID=abc",
		"a=1, PHPSESSID=abc",
		"a=1,PHPSESSID=abc",
		"PHPSESSID=abc, def",
		"PHPSESSID=a=b",
		"PHPSESSID[]=1; PHPSESSID=2",
		"PHPSESSID=1; PHPSESSID[]=2",
		"PHPSESSID[=1; PHPSESSID=2",
		"PHPSESSID[a]b=1",
		"[x]=1; PHPSESSID=2",
		"PHPSESSID=1; PHPSESSID" + strings.Repeat("[a]", 65) + "=2; PHPSESSID=3",
		"PHPSESSID=1; PHPSESSID" + strings.Repeat("[a]", 64) + "=2; PHPSESSID=3",
		strings.Repeat("c=1; ", 999) + "PHPSESSID=ok",
		strings.Repeat("c=1; ", 1000) + "PHPSESSID=ok",
		"PHPSESSID=" + long,
		"x=" + long + "; PHPSESSID=" + long + "b",
	} {
		got, gotOK := gateway.SessionCookie("PHPSESSID", header)
		want, wantOK := phpCookie(t, addr, header)
		if got != want || gotOK != wantOK {
			t.Errorf("Cookie: %.80q\n  gateway: %.60q, %v\n  PHP:     %.60q, %v", header, got, gotOK, want, wantOK)
		}
	}
}

// phpCookie asks php -S at addr what $_COOKIE['PHPSESSID'] is for header,
// sent verbatim as the request's one Cookie line.
func phpCookie(t *testing.T, addr, header string) (string, bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: localhost\r\nCookie: %s\r\nConnection: close\r\n\r\n", header)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		String bool   `json:"string"`
		Value  []byte `json:"value"` // base64, as the script encodes it
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("php answer for %.60q: %v", header, err)
	}
	return string(out.Value), out.String
}
