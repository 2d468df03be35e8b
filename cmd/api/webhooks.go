package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/webhook"
)

// webhookTargets returns where a tenant's webhooks go: its webhookUrl, signed
// with its oldest active signing key, the one the console's Pusher snippets
// name as the app key (PUSHER_APP_KEY), so a Pusher handler configured from
// them accepts the signature. Both are read from the database for each
// batch, not from a cache: another instance's cached settings may not yet
// have a URL set a moment ago, and "no URL" parks the batch.
func webhookTargets(settings *tenant.Store, signing *auth.SigningKeys) webhook.Targets {
	return func(ctx context.Context, id tenant.ID) (webhook.Target, bool, error) {
		s, err := settings.Settings(ctx, id)
		if err != nil {
			return webhook.Target{}, false, err
		}
		if s.WebhookURL == "" {
			return webhook.Target{}, false, nil
		}
		keys, err := signing.List(ctx, id)
		if err != nil {
			return webhook.Target{}, false, err
		}
		if len(keys) == 0 {
			return webhook.Target{}, false, errors.New("the tenant has no active signing key to sign its webhooks with: create one in the console (Signing keys)")
		}
		_, secret, err := signing.Secret(ctx, keys[0].Kid)
		if err != nil {
			return webhook.Target{}, false, fmt.Errorf("the signing key %s: %w", keys[0].Kid, err)
		}
		return webhook.Target{URL: s.WebhookURL, Key: keys[0].Kid, Secret: secret}, true, nil
	}
}

// checkWebhookURL is the rule for a tenant's webhookUrl: https (or http
// with WEBHOOK_ALLOW_PRIVATE=true), and a host that does not resolve to an
// internal address. A name that does not resolve now is accepted (DNS may
// be down for a moment); its deliveries then fail, visibly, and every
// connection is checked again when it is made.
func checkWebhookURL(sender *webhook.Sender, allowPrivate bool) func(context.Context, string) error {
	return func(ctx context.Context, url string) error {
		if err := webhook.CheckURL(url, allowPrivate); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := sender.Check(ctx, url); errors.Is(err, webhook.ErrInternalAddress) {
			return err
		}
		return nil
	}
}
