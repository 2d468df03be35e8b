package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// startAPI builds cmd/api and runs it on a fresh database, returning its
// base URL and process id; it is killed when the test ends.
func startAPI(t *testing.T) (string, int) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "api")
	if out, err := exec.Command("go", "build", "-o", bin, "../api").CombinedOutput(); err != nil {
		t.Fatalf("go build ../api: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"DATABASE_URL=" + pgtest.NewURL(t, true),
		"ADDR=127.0.0.1:0",
		"SECRET_KEY=loadgen-test-secret-key-of-32-characters-or-more",
		"SIGNUP=open",
		"LOG_LEVEL=info",
	}
	logPath := filepath.Join(t.TempDir(), "api.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("server log:\n%s", b)
		}
	})
	// ADDR=…:0: the server logs the port it got.
	var base string
	for deadline := time.Now().Add(60 * time.Second); base == ""; {
		b, _ := os.ReadFile(logPath)
		for line := range bytes.SplitSeq(b, []byte{'\n'}) {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "hybridrt is listening" {
				base = "http://" + rec.Addr
			}
		}
		if base == "" && time.Now().After(deadline) {
			t.Fatal("the server did not listen within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz: %v", base, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return base, cmd.Process.Pid
}

// TestRunRealServer runs the load generator against a real server, over
// SSE, over hybridrt's own WebSocket and over the Pusher door, and the
// presence-chat scenario, with the server's goroutine check.
func TestRunRealServer(t *testing.T) {
	base, pid := startAPI(t)
	for _, transport := range []string{"sse", "ws", "pusher"} {
		t.Run(transport, func(t *testing.T) {
			o := options{
				url: base, transport: transport, subscribers: 5, channel: "bench", publishers: 2, rate: 40, batch: 2,
				duration: time.Second, settle: 5 * time.Second, sources: 2, openParallel: 5, pid: pid,
			}
			var out bytes.Buffer
			ok, err := run(o, &out)
			report := out.String()
			if err != nil || !ok {
				t.Fatalf("ok %v, err %v:\n%s", ok, err, report)
			}
			for _, want := range []string{"transport: " + transport + "\n", "subscribers: 5\n", "events acknowledged: 40\n",
				"delivered/expected: 200/200\n", "out-of-order: 0\n", "latency samples: 200\n"} {
				if !strings.Contains(report, want) {
					t.Errorf("no %q in:\n%s", want, report)
				}
			}
		})
	}
	// Client events between the members of a presence channel: 5 members
	// at 4 events/s each for 1 s, each event due to the 4 others.
	t.Run(scenarioChat, func(t *testing.T) {
		o := options{
			url: base, scenario: scenarioChat, transport: "ws", subscribers: 5, channel: "room", rate: 20,
			duration: time.Second, settle: 5 * time.Second, joinWait: 10 * time.Second, sources: 2, openParallel: 5, pid: pid,
		}
		var out bytes.Buffer
		ok, err := run(o, &out)
		report := out.String()
		if err != nil || !ok {
			t.Fatalf("ok %v, err %v:\n%s", ok, err, report)
		}
		for _, want := range []string{"members seeing all before publishing: 5/5\n", "events acknowledged: 20\n",
			"delivered/expected: 80/80\n", "delivered to the sender: 0\n", "out-of-order: 0\n", "latency samples: 80\n"} {
			if !strings.Contains(report, want) {
				t.Errorf("no %q in:\n%s", want, report)
			}
		}
	})
}
