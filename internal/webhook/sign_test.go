package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSign(t *testing.T) {
	t.Parallel()
	// RFC 4231, test case 2.
	if got, want := Sign("Jefe", []byte("what do ya want for nothing?")),
		"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"; got != want {
		t.Errorf("Sign(RFC 4231 case 2) = %s, want %s", got, want)
	}
	body := []byte(`{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"prices"}]}`)
	m := hmac.New(sha256.New, []byte("7ad3773142a6692b25b8"))
	m.Write(body)
	if got, want := Sign("7ad3773142a6692b25b8", body), hex.EncodeToString(m.Sum(nil)); got != want {
		t.Errorf("Sign(webhook body) = %s, want %s", got, want)
	}
}

// pusherValidator is the script that checks a delivery with the pusher
// Node library, as a tenant's Pusher webhook handler would.
const pusherValidator = `
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const Pusher = require(input.module);
const out = {};
for (const [name, secret] of Object.entries(input.secrets)) {
  const pusher = new Pusher({appId: "1", key: input.key, secret, cluster: "mt1"});
  out[name] = pusher.webhook({headers: input.headers, rawBody: input.body}).isValid();
}
console.log(JSON.stringify(out));
`

// TestSignatureValidInPusherLibrary sends a real webhook through a Sender
// and hands what arrived to the pusher library's validator: the right
// secret passes, a wrong one fails.
func TestSignatureValidInPusherLibrary(t *testing.T) {
	t.Parallel()
	module, err := filepath.Abs("../../cmd/api/testdata/pusher/node_modules/pusher")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(module, "package.json")); err != nil {
		t.Skipf("the pusher Node library is not installed (npm ci in cmd/api/testdata/pusher): %v", err)
	}
	type arrival struct {
		header http.Header
		body   []byte
	}
	got := make(chan arrival, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- arrival{r.Header.Clone(), body}
	}))
	defer srv.Close()

	const key, secret = "278d425bdf160c739803", "7ad3773142a6692b25b8"
	body := []byte(`{"time_ms":1700000000000,"events":[{"name":"member_added","channel":"presence-room","user_id":"42"}]}`)
	s := NewSender(Options{AllowPrivate: true})
	res := s.Post(context.Background(), srv.URL+"/pusher/webhook", body, signed(key, secret, body))
	if res.Err != nil || res.Status != http.StatusOK {
		t.Fatalf("Post = %d, %v; want 200, nil", res.Status, res.Err)
	}
	a := <-got

	headers := map[string]string{} // the library wants lower-case names
	for name := range a.header {
		headers[strings.ToLower(name)] = a.header.Get(name)
	}
	in, _ := json.Marshal(map[string]any{
		"module":  module,
		"key":     key,
		"secrets": map[string]string{"right": secret, "wrong": "not-the-secret"},
		"headers": headers,
		"body":    string(a.body),
	})
	cmd := exec.Command("node", "-e", pusherValidator)
	cmd.Stdin = strings.NewReader(string(in))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var valid map[string]bool
	if err := json.Unmarshal(out, &valid); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	if !valid["right"] || valid["wrong"] {
		t.Errorf("pusher.webhook(…).isValid() = %v with the right secret, %v with a wrong one; want true, false", valid["right"], valid["wrong"])
	}
}

// signed returns the headers a worker puts on a webhook.
func signed(key, secret string, body []byte) http.Header {
	h := http.Header{}
	h.Set(HeaderKey, key)
	h.Set(HeaderSignature, Sign(secret, body))
	return h
}
