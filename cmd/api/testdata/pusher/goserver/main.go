// Command goserver runs one call of the official Go server library
// (github.com/pusher/pusher-http-go) and prints the result as one JSON line,
// with the conventions of server.mjs: {"status":200,"body":…} where body is
// what the library parsed from the response, or {"error":{"status":…,"body":…,
// "message":…}} (status 0 when no response came, -1 when the library refused
// the call itself). The call is JSON on the first argument or stdin:
//
//	{"call":"trigger","channel":"c" | "channels":["a","b"],"event":"e","data":…,"socket_id":"1.2","info":"user_count"}
//	{"call":"triggerBatch","batch":[{"channel":"c","name":"e","data":…,"socket_id":"1.2","info":"…"}]}
//	{"call":"channels","params":{"filter_by_prefix":"presence-","info":"user_count"}}
//	{"call":"channel","channel":"c","params":{"info":"subscription_count,user_count"}}
//	{"call":"users","channel":"presence-c"}
//
// Configuration: HOST, PORT, APP_ID, KEY, SECRET, TLS=1, ENCRYPTION_MASTER_KEY
// and NODE_EXTRA_CA_CERTS, as for the Node drivers; "key" and "secret" in the
// call override KEY and SECRET.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"time"

	pusher "github.com/pusher/pusher-http-go/v5"
)

type call struct {
	Call     string            `json:"call"`
	Channel  string            `json:"channel"`
	Channels []string          `json:"channels"`
	Event    string            `json:"event"`
	Data     any               `json:"data"`
	SocketID *string           `json:"socket_id"`
	Info     *string           `json:"info"`
	Params   map[string]string `json:"params"`
	Batch    []struct {
		Channel  string  `json:"channel"`
		Name     string  `json:"name"`
		Data     any     `json:"data"`
		SocketID *string `json:"socket_id"`
		Info     *string `json:"info"`
	} `json:"batch"`
	Key    string `json:"key"`
	Secret string `json:"secret"`
}

func main() {
	var raw []byte
	if len(os.Args) > 1 {
		raw = []byte(os.Args[1])
	} else {
		raw, _ = io.ReadAll(os.Stdin)
	}
	var c call
	if err := json.Unmarshal(raw, &c); err != nil {
		fmt.Fprintln(os.Stderr, "goserver: the call is not JSON:", err)
		os.Exit(2)
	}
	client := newClient(c)
	body, err := run(client, c)
	if err == errUnknown {
		fmt.Fprintf(os.Stderr, "goserver: unknown call %q; one of trigger, triggerBatch, channels, channel, users\n", c.Call)
		os.Exit(2)
	}
	line := map[string]any{"status": 200, "body": body}
	if err != nil {
		line = map[string]any{"error": failure(err)}
	}
	json.NewEncoder(os.Stdout).Encode(line)
}

func newClient(c call) *pusher.Client {
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	or := func(v, def string) string {
		if v != "" {
			return v
		}
		return def
	}
	client := &pusher.Client{
		AppID:                     env("APP_ID", "app"),
		Key:                       or(c.Key, os.Getenv("KEY")),
		Secret:                    or(c.Secret, os.Getenv("SECRET")),
		Host:                      net.JoinHostPort(env("HOST", "127.0.0.1"), env("PORT", "6001")),
		Secure:                    os.Getenv("TLS") == "1",
		EncryptionMasterKeyBase64: env("ENCRYPTION_MASTER_KEY", base64.StdEncoding.EncodeToString([]byte("hybridrt-test-encryption-key-32b"))),
	}
	// Trust what the Node drivers trust, as Node does: the system's roots
	// and NODE_EXTRA_CA_CERTS (a test server's certificate).
	if path := os.Getenv("NODE_EXTRA_CA_CERTS"); path != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(path); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		client.HTTPClient = &http.Client{Timeout: 10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	return client
}

var errUnknown = errors.New("unknown call")

func run(client *pusher.Client, c call) (any, error) {
	params := func(name string) *string {
		if v, ok := c.Params[name]; ok {
			return &v
		}
		return nil
	}
	switch c.Call {
	case "trigger":
		channels := c.Channels
		if channels == nil {
			channels = []string{c.Channel}
		}
		return client.TriggerMultiWithParams(channels, c.Event, c.Data, pusher.TriggerParams{SocketID: c.SocketID, Info: c.Info})
	case "triggerBatch":
		var batch []pusher.Event
		for _, e := range c.Batch {
			batch = append(batch, pusher.Event{Channel: e.Channel, Name: e.Name, Data: e.Data, SocketID: e.SocketID, Info: e.Info})
		}
		return client.TriggerBatch(batch)
	case "channels":
		return client.Channels(pusher.ChannelsParams{FilterByPrefix: params("filter_by_prefix"), Info: params("info")})
	case "channel":
		return client.Channel(c.Channel, pusher.ChannelParams{Info: params("info")})
	case "users":
		return client.GetChannelUsers(c.Channel)
	}
	return nil, errUnknown
}

// The library reports an HTTP error as "Status Code: 401 - body".
var httpError = regexp.MustCompile(`(?s)^Status Code: (\d+) - (.*)$`)

func failure(err error) map[string]any {
	m := httpError.FindStringSubmatch(err.Error())
	if m == nil {
		status := -1 // the library refused the call
		var netErr net.Error
		if errors.As(err, &netErr) {
			status = 0 // no response
		}
		return map[string]any{"status": status, "message": err.Error()}
	}
	status, _ := strconv.Atoi(m[1])
	var body any = m[2]
	var parsed any
	if json.Unmarshal([]byte(m[2]), &parsed) == nil {
		body = parsed
	}
	return map[string]any{"status": status, "body": body, "message": err.Error()}
}
