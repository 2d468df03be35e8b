package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// dialer opens TCP connections to the server, spreading their source
// addresses over 127.0.0.1..127.0.0.K when the server is on loopback, so
// that tens of thousands of connections do not run out of ephemeral ports
// (about 28,000 per source address and destination).
type dialer struct {
	target  *url.URL
	addr    string // host:port
	sources []*net.Dialer
	next    atomic.Uint64
}

func newDialer(target *url.URL, sources int) (*dialer, error) {
	host, port := target.Hostname(), target.Port()
	if port == "" {
		port = "80"
		if target.Scheme == "https" {
			port = "443"
		}
	}
	d := &dialer{target: target, addr: net.JoinHostPort(host, port)}
	ip := net.ParseIP(host)
	loopback := host == "localhost" || (ip != nil && ip.IsLoopback() && ip.To4() != nil)
	if sources < 1 || !loopback {
		d.sources = []*net.Dialer{{Timeout: 10 * time.Second}}
		return d, nil
	}
	if sources > 254 {
		return nil, fmt.Errorf("-sources %d: at most 254 (127.0.0.1 to 127.0.0.254)", sources)
	}
	if host == "localhost" {
		d.addr = net.JoinHostPort("127.0.0.1", port) // an IPv4 destination for IPv4 sources
	}
	for i := 1; i <= sources; i++ {
		d.sources = append(d.sources, &net.Dialer{
			Timeout:   10 * time.Second,
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i))},
		})
	}
	return d, nil
}

// dialTCP opens a TCP connection to the server from the next source
// address, whatever network and address it is asked for: the signature is
// net/http's and gorilla/websocket's DialContext.
func (d *dialer) dialTCP(ctx context.Context, _, _ string) (net.Conn, error) {
	nd := d.sources[d.next.Add(1)%uint64(len(d.sources))]
	return nd.DialContext(ctx, "tcp", d.addr)
}

// dial opens a connection (TLS for https) from the next source address.
func (d *dialer) dial(ctx context.Context) (net.Conn, error) {
	c, err := d.dialTCP(ctx, "", "")
	if err != nil {
		return nil, err
	}
	if d.target.Scheme == "https" {
		tc := tls.Client(c, &tls.Config{ServerName: d.target.Hostname()})
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
	return c, nil
}

// httpClient returns a client for the JSON API whose connections come from d.
func (d *dialer) httpClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext:         d.dialTCP,
			TLSClientConfig:     &tls.Config{ServerName: d.target.Hostname()},
			MaxIdleConns:        conns + 4,
			MaxIdleConnsPerHost: conns + 4,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   false,
		},
	}
}

// api is the server's JSON API, as the load generator uses it.
type api struct {
	base   string
	client *http.Client
}

// call sends body as JSON and decodes a 2xx answer into out. Any other
// status is an error quoting the problem's detail.
func (a *api) call(ctx context.Context, method, path, bearer string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
	}
	return json.Unmarshal(data, out)
}

// signup is what the load generator needs of its tenant.
type signup struct {
	apiKey string
	token  string // an SSE subscriber token for the channel
	appKey string // the signing key's kid: the Pusher app key
}

// newTenant signs up a fresh tenant, so the run's event ids are its own and
// start at 1, and returns its API key and app key.
func (a *api) newTenant(ctx context.Context, operatorToken string) (signup, error) {
	var tenant struct {
		APIKey     string `json:"apiKey"`
		SigningKey struct {
			Kid string `json:"kid"`
		} `json:"signingKey"`
	}
	name := "loadgen " + time.Now().UTC().Format(time.RFC3339)
	if err := a.call(ctx, http.MethodPost, "/v1/tenants", operatorToken, map[string]string{"name": name}, &tenant); err != nil {
		return signup{}, fmt.Errorf("sign up: %w", err)
	}
	return signup{apiKey: tenant.APIKey, appKey: tenant.SigningKey.Kid}, nil
}

// signUp creates a fresh tenant (newTenant) and mints one subscriber token
// for channel. With pusher set,
// it also makes channel public, so Pusher clients may subscribe to it
// without an auth signature.
func (a *api) signUp(ctx context.Context, operatorToken, channel string, ttl time.Duration, pusher bool) (signup, error) {
	su, err := a.newTenant(ctx, operatorToken)
	if err != nil {
		return signup{}, err
	}
	var tok struct {
		Token string `json:"token"`
	}
	req := map[string]any{"sub": "loadgen", "channels": []string{channel}, "ttl": int64(ttl / time.Second)}
	if err := a.call(ctx, http.MethodPost, "/v1/tokens", su.apiKey, req, &tok); err != nil {
		return signup{}, fmt.Errorf("mint token: %w", err)
	}
	su.token = tok.Token
	if pusher {
		if su.appKey == "" {
			return signup{}, errors.New("sign up: no signingKey.kid in the answer, which Pusher clients use as the app key")
		}
		settings := map[string]any{"publicChannels": []string{channel}}
		if err := a.call(ctx, http.MethodPatch, "/v1/tenant/settings", su.apiKey, settings, &struct{}{}); err != nil {
			return signup{}, fmt.Errorf("make %q a public channel: %w", channel, err)
		}
	}
	return su, nil
}
