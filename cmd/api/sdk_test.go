package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestSDKAndCORS: the service serves the JavaScript SDK and the example
// page, and pages on other origins may call the subscriber routes.
func TestSDKAndCORS(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	for path, want := range map[string]string{
		"/sdk/hybrid-realtime.js":                  "createHybridRealtime",
		"/sdk/react.js":                            "useHybridDashboard",
		"/sdk/index.d.ts":                          "createHybridRealtime",
		"/examples/dashboard":                      "HybridDashboardProvider",
		"/examples/dashboard.js":                   "useHybridDashboard",
		"/examples/react-shim.js":                  "window.React",
		"/examples/vendor/react.production.min.js": "react.production.min.js",
	} {
		res := in.do("GET", path, "", "", "Origin", "https://app.example.com")
		if res.status != 200 || !strings.Contains(string(res.body), want) {
			t.Errorf("GET %s = %d, lacks %q", path, res.status, want)
		}
		if strings.HasSuffix(path, ".js") && !strings.Contains(res.header.Get("Content-Type"), "javascript") {
			t.Errorf("GET %s Content-Type = %q", path, res.header.Get("Content-Type"))
		}
		if strings.HasPrefix(path, "/sdk/") && res.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s from another origin lacks Access-Control-Allow-Origin: *", path)
		}
	}
	// A preflight for a ticket request with a bearer token from another origin.
	req, _ := http.NewRequest("OPTIONS", in.url+"/api/realtime/tickets", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode >= 300 || res.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Errorf("preflight = %d %v", res.StatusCode, res.Header)
	}
	// The publish API and the console allow no other origin.
	for _, path := range []string{"/v1/events", "/console/login"} {
		res := in.do("GET", path, "", "", "Origin", "https://app.example.com")
		if res.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s allows other origins", path)
		}
	}
}
