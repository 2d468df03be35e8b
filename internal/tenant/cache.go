package tenant

import (
	"context"
	"sync"
	"time"
)

// Cache keeps each tenant's quotas and settings for CacheTTL, both read in
// one query, so enforcing quotas on every request and checking settings on
// every subscribe cost no query. A change made through this Cache is seen at
// once on its instance; a change made elsewhere (another instance, the
// operator API of another instance) within CacheTTL.
//
// The values it returns are shared: callers must not modify their slices.
type Cache struct {
	// CheckWebhookURL, when set, says why a webhook URL may not be used
	// (set it before use).
	CheckWebhookURL func(ctx context.Context, url string) error

	store *Store
	ttl   time.Duration

	mu      sync.Mutex
	entries map[ID]cacheEntry
	gen     uint64 // bumped by Forget, so a read that raced a change is not kept
}

type cacheEntry struct {
	q       Quotas
	s       Settings
	expires time.Time
}

// CacheTTL is how long a change of quotas or settings may take to reach an
// instance other than the one that made it.
const CacheTTL = 5 * time.Second

// NewCache returns a cache over store.
func NewCache(store *Store) *Cache {
	return &Cache{store: store, ttl: CacheTTL, entries: map[ID]cacheEntry{}}
}

// NewQuotaCache returns a cache over store.
//
// Deprecated: use NewCache; this name remains for callers not yet renamed.
func NewQuotaCache(store *Store) *Cache { return NewCache(store) }

// Quotas returns tenant id's quotas, at most CacheTTL old.
func (c *Cache) Quotas(ctx context.Context, id ID) (Quotas, error) {
	e, err := c.get(ctx, id)
	return e.q, err
}

// Settings returns tenant id's settings, at most CacheTTL old.
func (c *Cache) Settings(ctx context.Context, id ID) (Settings, error) {
	e, err := c.get(ctx, id)
	return e.s, err
}

func (c *Cache) get(ctx context.Context, id ID) (cacheEntry, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[id]
	gen := c.gen
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e, nil
	}
	q, s, err := c.store.config(ctx, id)
	if err != nil {
		return cacheEntry{}, err
	}
	e = cacheEntry{q: q, s: s, expires: now.Add(c.ttl)}
	c.mu.Lock()
	if c.gen == gen { // else a change was made while we read: the next call reads again
		if len(c.entries) > 100_000 {
			clear(c.entries)
		}
		c.entries[id] = e
	}
	c.mu.Unlock()
	return e, nil
}

// Forget drops id from the cache, on the instance that changed its quotas
// or settings, so the next read sees the change.
func (c *Cache) Forget(id ID) {
	c.mu.Lock()
	delete(c.entries, id)
	c.gen++
	c.mu.Unlock()
}

// UpdateSettings changes tenant id's settings as Store.UpdateSettings does,
// and forgets the cached ones, so this instance sees the change at once.
//
// A webhookUrl is checked with CheckWebhookURL first, when set: where it may
// point is the webhook sender's rule (https only, no internal address),
// not the settings' shape.
func (c *Cache) UpdateSettings(ctx context.Context, id ID, p SettingsPatch) (Settings, error) {
	if p.WebhookURL != nil && *p.WebhookURL != "" && c.CheckWebhookURL != nil {
		if err := p.Validate(); err != nil {
			return Settings{}, err
		}
		if err := c.CheckWebhookURL(ctx, *p.WebhookURL); err != nil {
			return Settings{}, &SettingError{Field: "webhookUrl", Reason: `"webhookUrl": ` + err.Error()}
		}
	}
	s, err := c.store.UpdateSettings(ctx, id, p)
	c.Forget(id) // even after an error: the update may have committed
	return s, err
}
