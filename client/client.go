// Package client is the Go client of hybridrt: publish events and mint
// subscriber tokens from a backend (Client), and subscribe from a Go program
// with the same SSE-first, long-polling-fallback behaviour as the JavaScript
// SDK (Subscribe).
//
//	c := client.New("https://rt.example.com", os.Getenv("HYBRIDRT_API_KEY"))
//	ids, err := c.Publish(ctx, client.EventInput{Channel: "user:42", Type: "order.shipped", Data: order})
//
// # Tokens
//
// A subscription gets its subscriber tokens from SubscribeOptions.Token and
// reads each token's exp (and iat) without verifying it. Shortly before a
// token expires — a third of its remaining lifetime before, at most 30 s —
// it calls Token again:
//
//   - An SSE stream is renewed in place: the new token goes to
//     POST /api/realtime/connections/{id}/token, id being the connection id
//     of the stream's ready event (State.ConnectionID). The stream goes on;
//     nothing reconnects, so nothing is repeated or missed.
//   - Long-polling sends the new token with its next poll, so no poll goes
//     out with a token about to expire.
//
// A renewal that fails is retried while the token is valid when the failure
// may pass (a network error, 5xx, 429), and given up at once when the
// service refuses it (401, 403, or 404: the connection is not found, e.g.
// because it moved to another instance). State.Err then wraps ErrRenew while
// the stream stays connected. The stream ends with token_expired at the old
// token's expiry, and the subscription calls Token and resumes from its
// cursor, as it does after a 401: either way each event arrives once, in order.
package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls the API with a tenant's API key.
type Client struct {
	BaseURL string       // the service's origin, e.g. https://rt.example.com
	APIKey  string       // hrt_…
	HTTP    *http.Client // defaults to a client with a 30 s timeout
	// MaxRetries is how often a publish is retried after a network error, a
	// 503 or a 429 (default 4). Retries are safe: every publish carries an
	// Idempotency-Key, so a retried request never publishes twice.
	MaxRetries int
}

// New returns a client for the service at baseURL.
func New(baseURL, apiKey string) *Client {
	return &Client{BaseURL: strings.TrimSuffix(baseURL, "/"), APIKey: apiKey, HTTP: &http.Client{Timeout: 30 * time.Second}, MaxRetries: 4}
}

// Error is a problem response from the API (RFC 9457).
type Error struct {
	Status     int    `json:"status"`
	Code       string `json:"code"`
	Title      string `json:"title"`
	Detail     string `json:"detail"`
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("hybridrt: %d %s: %s", e.Status, e.Code, e.Detail)
}

// temporary reports whether a retry may succeed.
func (e *Error) temporary() bool {
	return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests || e.Status == http.StatusBadGateway || e.Status == http.StatusGatewayTimeout
}

// Event is an event as subscribers and history receive it.
type Event struct {
	ID      string          `json:"id"`
	Channel string          `json:"channel"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`
	Time    time.Time       `json:"time"`
	User    string          `json:"user,omitempty"` // a client event's sender
}

// EventInput is an event to publish: on Channel, or on each of Channels.
// Data is marshalled with encoding/json (a json.RawMessage goes as it is).
type EventInput struct {
	Channel  string   `json:"channel,omitempty"`
	Channels []string `json:"channels,omitempty"`
	Type     string   `json:"type"`
	Data     any      `json:"data,omitempty"`
}

// PublishOption changes one publish call.
type PublishOption func(*publishOptions)

type publishOptions struct{ idempotencyKey string }

// WithIdempotencyKey sets the Idempotency-Key: the same key within 24 h
// returns the first call's ids and publishes nothing. Without it the client
// makes one up per call, which protects its own retries.
func WithIdempotencyKey(key string) PublishOption {
	return func(o *publishOptions) { o.idempotencyKey = key }
}

// Publish publishes one event and returns its ids, one per channel.
func (c *Client) Publish(ctx context.Context, ev EventInput, opts ...PublishOption) ([]string, error) {
	return c.publish(ctx, "/v1/events", ev, opts)
}

// PublishBatch publishes up to 1000 events, all or nothing.
func (c *Client) PublishBatch(ctx context.Context, evs []EventInput, opts ...PublishOption) ([]string, error) {
	return c.publish(ctx, "/v1/events", map[string]any{"events": evs}, opts)
}

// Notify sends a notification to users, as POST /v1/notifications.
func (c *Client) Notify(ctx context.Context, title, message string, userIDs []string, data any, opts ...PublishOption) ([]string, error) {
	return c.publish(ctx, "/v1/notifications", map[string]any{"title": title, "message": message, "userIds": userIDs, "data": data}, opts)
}

// UpdateDashboard publishes a dashboard update, as POST /v1/dashboard.
func (c *Client) UpdateDashboard(ctx context.Context, updateType string, data any, opts ...PublishOption) ([]string, error) {
	return c.publish(ctx, "/v1/dashboard", map[string]any{"type": updateType, "data": data}, opts)
}

func (c *Client) publish(ctx context.Context, path string, body any, opts []PublishOption) ([]string, error) {
	o := publishOptions{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.idempotencyKey == "" {
		var b [16]byte
		_, _ = crand.Read(b[:])
		o.idempotencyKey = "go-" + hex.EncodeToString(b[:])
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("hybridrt: encode event: %w", err)
	}
	var out struct {
		IDs []string `json:"ids"`
	}
	wait := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err = c.do(ctx, http.MethodPost, path, payload, map[string]string{"Idempotency-Key": o.idempotencyKey}, &out)
		var apiErr *Error
		retryable := err != nil && ctx.Err() == nil && (!errors.As(err, &apiErr) || apiErr.temporary())
		if !retryable || attempt >= c.MaxRetries {
			return out.IDs, err
		}
		d := wait/2 + rand.N(wait/2+1)
		if apiErr != nil && apiErr.RetryAfter > d {
			d = apiErr.RetryAfter
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// Token is a subscriber token minted by the service.
type Token struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// MintToken mints a subscriber token for user sub with extra channel grants
// (names or prefix* patterns), valid for ttl (at most 24 h).
func (c *Client) MintToken(ctx context.Context, sub string, channels []string, ttl time.Duration) (Token, error) {
	return c.Mint(ctx, TokenRequest{Sub: sub, Channels: channels, TTL: ttl})
}

// TokenRequest is what a minted subscriber token allows.
type TokenRequest struct {
	Sub      string          // the user
	Channels []string        // channels to subscribe to besides user:<sub>: names or prefix* patterns
	Publish  []string        // channels to send client events to: names or prefix* patterns
	Info     json.RawMessage // a JSON object presence shows beside Sub, at most 1 KB
	TTL      time.Duration   // at most 24 h; 0 is an hour
}

// Mint mints a subscriber token as r asks.
func (c *Client) Mint(ctx context.Context, r TokenRequest) (Token, error) {
	body, _ := json.Marshal(map[string]any{"sub": r.Sub, "channels": r.Channels, "publish": r.Publish,
		"info": r.Info, "ttl": int(r.TTL.Seconds())})
	var t Token
	err := c.do(ctx, http.MethodPost, "/v1/tokens", body, nil, &t)
	return t, err
}

// Connection is a connected client, as GET /v1/connections lists it.
type Connection struct {
	ID          string    `json:"id"`
	User        string    `json:"user"`
	Channels    []string  `json:"channels"`
	Transport   string    `json:"transport"`
	Instance    string    `json:"instance"`
	RemoteAddr  string    `json:"remoteAddr"`
	UserAgent   string    `json:"userAgent"`
	ConnectedAt time.Time `json:"connectedAt"`
}

// Connections lists the tenant's connected clients on every instance.
func (c *Client) Connections(ctx context.Context) ([]Connection, error) {
	var out struct {
		Connections []Connection `json:"connections"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/connections", nil, nil, &out)
	return out.Connections, err
}

// Head returns the tenant's latest event id: hand it to a client as its
// start cursor, so nothing published after the page was rendered is missed.
func (c *Client) Head(ctx context.Context) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/head", nil, nil, &out)
	return out.ID, err
}

// History returns up to limit events after the cursor on channel ("" for
// all), and the cursor of the next page.
func (c *Client) History(ctx context.Context, channel, after string, limit int) ([]Event, string, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if channel != "" {
		q.Set("channel", channel)
	}
	if after != "" {
		q.Set("after", after)
	}
	var out struct {
		Events []Event `json:"events"`
		Cursor string  `json:"cursor"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil, nil, &out)
	return out.Events, out.Cursor, err
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, header map[string]string, out any) error {
	return doJSON(ctx, c.HTTP, method, c.BaseURL+path, c.APIKey, body, header, out)
}

// doJSON sends a request with a bearer credential and decodes the answer,
// or returns an *Error for a problem response.
func doJSON(ctx context.Context, hc *http.Client, method, u, bearer string, body []byte, header map[string]string, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		return problem(res)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(res.Body, 64<<20)).Decode(out)
}

func problem(res *http.Response) error {
	e := &Error{Status: res.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if json.Unmarshal(b, e) != nil || e.Code == "" {
		e.Code, e.Detail = "http_"+strconv.Itoa(res.StatusCode), strings.TrimSpace(string(b))
	}
	e.Status = res.StatusCode
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}
