package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// publishConfig is what every publisher shares.
type publishConfig struct {
	client  *http.Client
	url     string // …/v1/events
	apiKey  string
	channel string
	batch   int
	// interval between one publisher's requests; 0 sends as fast as possible.
	interval time.Duration
	latency  *histogram // from sending a request to reading its 201
}

// publisher sends publish requests on its own schedule and remembers every
// acknowledged id. Main reads its fields after it has returned.
type publisher struct {
	cfg *publishConfig
	idx int

	acked    idSet
	ok       int64
	failed   map[string]int64 // by status code, or "error" for a transport failure
	firstErr map[string]string
	short    int64 // 201s with fewer or more ids than events sent
	dupAcked int64 // ids this publisher was given twice
	seq      int64

	body bytes.Buffer
}

// run publishes from start until deadline. The first request goes out at
// start+offset, the k-th at start+offset+k·interval, or at once when the
// publisher is behind: the average rate holds even after a slow request.
func (p *publisher) run(ctx context.Context, start time.Time, offset time.Duration, deadline time.Time) {
	p.failed, p.firstErr = map[string]int64{}, map[string]string{}
	next := start.Add(offset)
	for {
		if p.cfg.interval > 0 {
			if !next.Before(deadline) {
				// The phase lasts until the deadline, even when the last
				// request went out earlier, so rates are per -duration.
				select {
				case <-time.After(time.Until(deadline)):
				case <-ctx.Done():
				}
				return
			}
			if d := time.Until(next); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			next = next.Add(p.cfg.interval)
		} else if !time.Now().Before(deadline) {
			return
		}
		if ctx.Err() != nil {
			return
		}
		p.publishOnce(ctx)
	}
}

// publishOnce sends one request of cfg.batch events, each carrying its send
// time, publisher and sequence number.
func (p *publisher) publishOnce(ctx context.Context) {
	b := &p.body
	b.Reset()
	t := time.Now().UnixNano()
	event := func() {
		p.seq++
		b.WriteString(`{"channel":`)
		ch, _ := json.Marshal(p.cfg.channel)
		b.Write(ch)
		b.WriteString(`,"type":"load","data":{"t":`)
		b.WriteString(strconv.FormatInt(t, 10))
		b.WriteString(`,"p":`)
		b.WriteString(strconv.Itoa(p.idx))
		b.WriteString(`,"n":`)
		b.WriteString(strconv.FormatInt(p.seq, 10))
		b.WriteString(`}}`)
	}
	if p.cfg.batch == 1 {
		event()
	} else {
		b.WriteString(`{"events":[`)
		for i := range p.cfg.batch {
			if i > 0 {
				b.WriteByte(',')
			}
			event()
		}
		b.WriteString(`]}`)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.url, bytes.NewReader(b.Bytes()))
	if err != nil {
		p.fail("error", err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.cfg.apiKey)
	sent := time.Now()
	resp, err := p.cfg.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			p.fail("error", err.Error())
		}
		return
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		p.fail("error", err.Error())
		return
	}
	if resp.StatusCode != http.StatusCreated {
		p.fail(strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(data)))
		return
	}
	var out struct {
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		p.fail("bad-201", err.Error())
		return
	}
	p.ok++
	p.cfg.latency.observe(time.Since(sent))
	if len(out.IDs) != p.cfg.batch {
		p.short++
	}
	for _, s := range out.IDs {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			p.fail("bad-id", s)
			continue
		}
		if !p.acked.add(id) {
			p.dupAcked++
		}
	}
}

func (p *publisher) fail(status, msg string) {
	p.failed[status]++
	if _, ok := p.firstErr[status]; !ok {
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		p.firstErr[status] = msg
	}
}
