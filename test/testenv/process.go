package testenv

import (
	"os/exec"
	"testing"
	"time"
)

// process is a server binary a test runs, and may kill and start again:
// the lifecycle RedisServer and MemcachedServer share.
type process struct {
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
}

// start runs cmd and waits up to 5s for up() to hold; if the server exits
// or does not come up, t fails with name and what logs() returns.
func (p *process) start(t testing.TB, name string, cmd *exec.Cmd, up func() bool, logs func() string) {
	t.Helper()
	if p.cmd != nil {
		t.Fatalf("%s already running", name)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.cmd = cmd
	exit := make(chan struct{})
	p.exit = exit
	go func() { _ = cmd.Wait(); close(exit) }()
	deadline := time.Now().Add(5 * time.Second)
	for !up() {
		select {
		case <-exit:
			p.cmd = nil
			t.Fatalf("%s exited:\n%s", name, logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up:\n%s", name, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the server with SIGKILL, as a crash would, and waits for it
// to exit. Killing a stopped server does nothing.
func (p *process) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exit
	p.cmd = nil
}
