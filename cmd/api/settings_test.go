package main

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// settingsOf reads a tenant's settings as GET /v1/tenant shows them.
func settingsOf(t *testing.T, in *instance, apiKey string) map[string]any {
	t.Helper()
	res := in.do("GET", "/v1/tenant", apiKey, "")
	var got struct{ Settings map[string]any }
	res.json(t, &got)
	if res.status != 200 {
		t.Fatalf("GET /v1/tenant = %d %s", res.status, res.body)
	}
	return got.Settings
}

// settingsJSON decodes a settings object as a test compares it.
func settingsJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSettings: PATCH /v1/tenant/settings changes the fields it names and
// only those, on the key's tenant only, refuses bad input with a 400 that
// changes nothing, and GET /v1/tenant shows the settings (never the
// operator's quotas stored beside them).
func TestSettings(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.OperatorToken = "operator-token-0123456789abcdef"
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme, other := in.signup("Acme"), in.signup("Other")
	defaults := settingsJSON(t, `{"publicChannels":[],"clientEvents":false,"webhookUrl":"","webhookEvents":[]}`)
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, defaults) {
		t.Errorf("settings of a new tenant = %v, want %v", got, defaults)
	}
	if res := in.do("PUT", "/v1/operator/tenants/"+acme.Tenant.ID+"/quotas", cfg.OperatorToken, `{"maxBatch":7}`); res.status != 200 {
		t.Fatalf("PUT quotas = %d %s", res.status, res.body)
	}

	// A round trip: the answer is every setting, and GET shows the same.
	full := `{"publicChannels":["news","scores-*","*"],"clientEvents":true,"webhookUrl":"https://example.com/hook","webhookEvents":["channel_occupied","client_event"]}`
	res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, full)
	if res.status != 200 || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("PATCH %s = %d %s", full, res.status, res.body)
	}
	want := settingsJSON(t, full)
	if got := settingsJSON(t, string(res.body)); !reflect.DeepEqual(got, want) {
		t.Errorf("PATCH answer = %v, want %v", got, want)
	}
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, want) {
		t.Errorf("GET /v1/tenant settings after PATCH = %v, want %v", got, want)
	}
	// This instance's cache sees the change at once.
	if s, err := in.svc.quotas.Settings(t.Context(), tenantID(t, acme.Tenant.ID)); err != nil || !s.ClientEvents || !s.IsPublic("scores-1") {
		t.Errorf("cached settings after PATCH = %+v, %v; want the change", s, err)
	}

	// A partial patch keeps the other fields; null is the same as leaving a field out.
	for _, patch := range []struct{ body, field string }{
		{`{"clientEvents":false}`, "clientEvents"},
		{`{"publicChannels":["live-*"]}`, "publicChannels"},
		{`{"webhookUrl":""}`, "webhookUrl"},
		{`{"webhookEvents":[],"clientEvents":null}`, "webhookEvents"},
		{`{}`, ""},
	} {
		res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, patch.body)
		if res.status != 200 {
			t.Fatalf("PATCH %s = %d %s", patch.body, res.status, res.body)
		}
		if patch.field != "" {
			want[patch.field] = settingsJSON(t, patch.body)[patch.field]
		}
		if got := settingsJSON(t, string(res.body)); !reflect.DeepEqual(got, want) {
			t.Errorf("PATCH %s = %v, want %v", patch.body, got, want)
		}
	}
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, want) {
		t.Errorf("settings after partial patches = %v, want %v", got, want)
	}

	// Bad input: a 400 with a stable code, and nothing changes.
	for _, tt := range []struct{ body, code string }{
		{`{"publicChanels":["x"]}`, "invalid_json"},
		{`{"quotas":{"maxBatch":1000}}`, "invalid_json"},
		{`{"clientEvents":"yes"}`, "invalid_json"},
		{`{"publicChannels":"news"}`, "invalid_json"},
		{`[]`, "invalid_json"},
		{`{"clientEvents":true,"publicChannels":["bad name"]}`, "invalid_public_channels"},
		{`{"clientEvents":true,"publicChannels":["a*b"]}`, "invalid_public_channels"},
		{`{"publicChannels":["user:*"]}`, "invalid_public_channels"},
		{`{"publicChannels":["private-*"]}`, "invalid_public_channels"},
		{`{"publicChannels":[` + strings.Repeat(`"x",`, tenant.MaxPublicChannels) + `"y"]}`, "invalid_public_channels"},
		{`{"webhookUrl":"http://example.com/hook"}`, "invalid_webhook_url"},
		{`{"webhookEvents":["channel_occupied","nope"]}`, "invalid_webhook_events"},
	} {
		if code := checkProblem(t, "PATCH "+tt.body, in.do("PATCH", "/v1/tenant/settings", acme.APIKey, tt.body), 400); code != tt.code {
			t.Errorf("PATCH %s: code %q, want %q", tt.body, code, tt.code)
		}
	}
	checkProblem(t, "PATCH as text", in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{}`, "Content-Type", "text/plain"), 415)
	checkProblem(t, "PATCH without a key", in.do("PATCH", "/v1/tenant/settings", "", `{"clientEvents":true}`), 401)
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, want) {
		t.Errorf("settings after refused patches = %v, want %v", got, want)
	}

	// The other tenant is untouched, and its own patch leaves acme alone.
	if got := settingsOf(t, in, other.APIKey); !reflect.DeepEqual(got, defaults) {
		t.Errorf("the other tenant's settings = %v, want %v", got, defaults)
	}
	if res := in.do("PATCH", "/v1/tenant/settings", other.APIKey, `{"clientEvents":true}`); res.status != 200 {
		t.Fatalf("PATCH as other = %d %s", res.status, res.body)
	}
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, want) {
		t.Errorf("acme's settings after other's patch = %v, want %v", got, want)
	}

	// The operator's quotas, stored in the same column, are kept and not shown.
	res = in.do("GET", "/v1/operator/tenants/"+acme.Tenant.ID+"/quotas", cfg.OperatorToken, "")
	if res.status != 200 || !strings.Contains(string(res.body), `"maxBatch":7`) {
		t.Errorf("quotas after settings changed = %d %s, want maxBatch 7 kept", res.status, res.body)
	}
	if _, ok := settingsOf(t, in, acme.APIKey)["quotas"]; ok {
		t.Errorf("GET /v1/tenant shows the operator's quotas in settings")
	}
}

func tenantID(t *testing.T, s string) tenant.ID {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("tenant id %q: %v", s, err)
	}
	return tenant.ID(n)
}
