package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
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

// dial opens a connection (TLS for https) from the next source address.
func (d *dialer) dial(ctx context.Context) (net.Conn, error) {
	nd := d.sources[d.next.Add(1)%uint64(len(d.sources))]
	c, err := nd.DialContext(ctx, "tcp", d.addr)
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
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				nd := d.sources[d.next.Add(1)%uint64(len(d.sources))]
				return nd.DialContext(ctx, "tcp", d.addr)
			},
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

// signUp creates a fresh tenant, so the run's event ids are its own and
// start at 1, and mints one subscriber token for channel.
func (a *api) signUp(ctx context.Context, operatorToken, channel string, ttl time.Duration) (apiKey, token string, err error) {
	var tenant struct {
		Tenant struct {
			ID string `json:"id"`
		} `json:"tenant"`
		APIKey string `json:"apiKey"`
	}
	name := "loadgen " + time.Now().UTC().Format(time.RFC3339)
	if err := a.call(ctx, http.MethodPost, "/v1/tenants", operatorToken, map[string]string{"name": name}, &tenant); err != nil {
		return "", "", fmt.Errorf("sign up: %w", err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	req := map[string]any{"sub": "loadgen", "channels": []string{channel}, "ttl": int64(ttl / time.Second)}
	if err := a.call(ctx, http.MethodPost, "/v1/tokens", tenant.APIKey, req, &tok); err != nil {
		return "", "", fmt.Errorf("mint token: %w", err)
	}
	return tenant.APIKey, tok.Token, nil
}
