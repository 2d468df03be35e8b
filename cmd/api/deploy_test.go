package main

// The operators' tools in deploy/: the Grafana dashboard and the Prometheus
// alerting rules. They are checked as Grafana and Prometheus would read
// them (PromQL through Prometheus's own parser, the rules through its rule
// file parser, the one promtool check rules uses), and every metric and
// label they name is checked against what a running instance serves at
// /metrics: a renamed metric fails here, not on an operator's empty panel.

import (
	"bufio"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	grafana "github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

const (
	dashboardFile = "../../deploy/grafana/hybridrt.json"
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	deployDoc     = "../../docs/deploy.md"
)

// scrapeLabels are the labels Prometheus adds to every series it scrapes.
var scrapeLabels = []string{"job", "instance"}

// synthetic are series Prometheus makes itself, not read from /metrics,
// with their labels.
var synthetic = map[string][]string{"up": scrapeLabels}

// promQL is one PromQL expression of the dashboard or the rules.
type promQL struct {
	where string // "panel \"Connections\" target A", "alert HybridrtListenerDown"
	expr  string // as Prometheus receives it
}

// dashboard is the part of Grafana's dashboard model that the checks read.
type dashboard struct {
	UID           string          `json:"uid"`
	Title         string          `json:"title"`
	SchemaVersion int             `json:"schemaVersion"`
	Inputs        json.RawMessage `json:"__inputs"`
	Panels        []panel         `json:"panels"`
	Templating    struct {
		List []struct {
			Type       string          `json:"type"`
			Name       string          `json:"name"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	GridPos     struct{ H, W, X, Y int }
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID        string         `json:"refId"`
		Expr         string         `json:"expr"`
		LegendFormat string         `json:"legendFormat"`
		Datasource   *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// promDS is the datasource every panel, target and query variable
// names: the dashboard's own variable, so an import needs no edits.
var promDS = datasourceRef{Type: "prometheus", UID: "${datasource}"}

func readDashboard(t *testing.T) (dashboard, []byte) {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not a dashboard: %v", dashboardFile, err)
	}
	return d, raw
}

// grafanaMacro is a Grafana interval macro ($__rate_interval and friends),
// which Grafana replaces with a duration before Prometheus sees the query.
var grafanaMacro = regexp.MustCompile(`\$__\w+`)

// labelValues is a variable's query: label_values(selector, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// dashboardQueries returns every PromQL expression of d, its panels' and its
// variables', as Prometheus would get them from Grafana.
func dashboardQueries(t *testing.T, d dashboard) []promQL {
	t.Helper()
	var qs []promQL
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			qs = append(qs, promQL{"panel " + p.Title + " target " + tg.RefID, grafanaMacro.ReplaceAllString(tg.Expr, "1m")})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var query struct{ Query string }
		if err := json.Unmarshal(v.Query, &query); err != nil || query.Query != v.Definition {
			t.Errorf("variable %s: query %s, definition %q: want {\"query\": the definition}", v.Name, v.Query, v.Definition)
		}
		m := labelValues.FindStringSubmatch(query.Query)
		if m == nil {
			t.Errorf("variable %s: query %q, want label_values(selector, label)", v.Name, query.Query)
			continue
		}
		// label_values(sel, label) asks for the series of sel and reads label from them.
		qs = append(qs, promQL{"variable " + v.Name, "count by (" + m[2] + ") (" + m[1] + ")"})
	}
	return qs
}

// allPanels is ps with the panels of collapsed rows.
func allPanels(ps []panel) []panel {
	var all []panel
	for _, p := range ps {
		all = append(all, p)
		all = append(all, allPanels(p.Panels)...)
	}
	return all
}

func readRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	// What promtool check rules does: strict YAML, every expression and
	// every template of the labels and annotations parsed.
	groups, errs := rulefmt.Parse(raw, false, pmodel.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", alertsFile, err)
	}
	if groups == nil {
		t.FailNow()
	}
	return groups
}

func ruleQueries(groups *rulefmt.RuleGroups) []promQL {
	var qs []promQL
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			qs = append(qs, promQL{"alert " + r.Alert + r.Record, r.Expr})
		}
	}
	return qs
}

// TestDeployDashboard: deploy/grafana/hybridrt.json matches Grafana's
// dashboard schema, and a Grafana user imports it with no edits: a
// datasource variable of type prometheus, no __inputs to fill, no instance
// written in. Its schema version is a current Grafana's; every panel has a
// title, a description and a unit; panels do not overlap; every query is
// PromQL that Prometheus parses, filtered by the job and instance variables.
func TestDeployDashboard(t *testing.T) {
	t.Parallel()
	d, raw := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: want both", d.UID, d.Title)
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want 39 (Grafana 10.4) or later", d.SchemaVersion)
	}
	// Grafana's own schema, as its foundation SDK generates it from
	// Grafana's: every field known and of its type, the panels' options
	// and field configs by the schemas of their plugins.
	plugins.RegisterDefaultPlugins()
	var full grafana.Dashboard
	err := schemaErr(full.UnmarshalJSONStrict(raw))
	if err == nil {
		err = schemaErr(full.Validate())
	}
	if err != nil {
		t.Errorf("%s does not match Grafana's dashboard schema:\n%v", dashboardFile, err)
	}
	if len(d.Inputs) > 0 || strings.Contains(string(raw), "${DS_") {
		t.Errorf("the dashboard asks for __inputs; use the datasource variable, which works through provisioning too")
	}

	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil || q != "prometheus" || v.Name != "datasource" {
				t.Errorf("datasource variable %s of %s, want \"datasource\" of prometheus", v.Name, v.Query)
			}
		case "query":
			if v.Datasource == nil || *v.Datasource != promDS {
				t.Errorf("variable %s reads datasource %+v, want %+v", v.Name, v.Datasource, promDS)
			}
		}
	}
	for _, name := range []string{"datasource", "job", "instance"} {
		if !vars[name] {
			t.Errorf("no %s variable", name)
		}
	}

	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	panels := allPanels(d.Panels)
	for _, p := range panels {
		what := p.Type + " panel " + p.Title
		if strings.TrimSpace(p.Title) == "" {
			t.Errorf("panel %d (%s) has no title", p.ID, p.Type)
		}
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("%s: id %d is 0 or taken", what, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v outside Grafana's 24 columns", what, g)
		}
	cells:
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("%s overlaps %s at column %d, row %d", what, other, x, y)
					break cells
				}
				taken[cell{x, y}] = what
			}
		}
		if p.Type == "row" {
			continue
		}
		if !slices.Contains([]string{"timeseries", "stat"}, p.Type) {
			t.Errorf("%s: type %q, want timeseries (or stat)", what, p.Type)
		}
		if p.Description == "" {
			t.Errorf("%s has no description", what)
		}
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("%s has no unit", what)
		}
		if p.Datasource == nil || *p.Datasource != promDS {
			t.Errorf("%s: datasource %+v, want %+v", what, p.Datasource, promDS)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s has no query", what)
		}
		for _, tg := range p.Targets {
			if tg.RefID == "" || tg.Expr == "" || tg.Datasource == nil || *tg.Datasource != promDS {
				t.Errorf("%s: target %+v, want a refId, an expr and datasource %+v", what, tg, promDS)
			}
			if tg.LegendFormat == "" && p.Type == "timeseries" {
				t.Errorf("%s: target %s has no legend", what, tg.RefID)
			}
		}
	}
	if len(panels) < 10 {
		t.Errorf("%d panels", len(panels))
	}

	// Every selector is filtered by the variables, none by an instance
	// written in: a Grafana user picks job and instance, and sees them.
	p := parser.NewParser(parser.Options{})
	for _, q := range dashboardQueries(t, d) {
		if strings.HasPrefix(q.where, "variable ") {
			continue // the variables' own queries are filtered by what they need
		}
		e, err := p.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
			continue
		}
		for _, vs := range selectors(e) {
			want := map[string]string{"job": "$job", "instance": "$instance"}
			for _, m := range vs.LabelMatchers {
				v, ok := want[m.Name]
				switch {
				case ok && m.Type == labels.MatchRegexp && m.Value == v:
					delete(want, m.Name)
				case ok:
					t.Errorf("%s: %s matches %s with %s%q, want =~%q", q.where, vs, m.Name, m.Type, m.Value, v)
				}
			}
			if len(want) > 0 {
				t.Errorf("%s: %s is not filtered by the job and instance variables", q.where, vs)
			}
		}
	}
}

// schemaErr is err from the foundation SDK, nil when it holds no error:
// its decoders return an empty list of errors rather than nil.
func schemaErr(err error) error {
	if errs, ok := errors.AsType[cog.BuildErrors](err); ok && len(errs) == 0 {
		return nil
	}
	return err
}

// selectors are the vector selectors in e, those inside range selectors too.
func selectors(e parser.Expr) []*parser.VectorSelector {
	var vss []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vss = append(vss, vs)
		}
		return nil
	})
	return vss
}

// TestDeployAlerts: deploy/prometheus/alerts.yml is a rule file Prometheus
// loads (the checks of promtool check rules), every rule an alert that
// waits (for) before it fires, with a severity, a summary and a
// description, and docs/deploy.md explains each of them under a heading
// of its name, and no other.
func TestDeployAlerts(t *testing.T) {
	t.Parallel()
	groups := readRules(t)
	var names []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: recording rule %s; this file holds alerts", g.Name, r.Record)
				continue
			}
			if slices.Contains(names, r.Alert) {
				t.Errorf("alert %s twice", r.Alert)
			}
			names = append(names, r.Alert)
			if r.For <= 0 {
				t.Errorf("alert %s has no for: it would page on one bad evaluation", r.Alert)
			}
			if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, a)
				}
			}
			if !strings.Contains(r.Annotations["description"], "docs/deploy.md, "+r.Alert) {
				t.Errorf("alert %s: the description does not point to docs/deploy.md, %s", r.Alert, r.Alert)
			}
		}
	}
	for _, want := range []string{"HybridrtInstanceDown", "HybridrtAbsent", "HybridrtListenerDown", "HybridrtNotifyQueueHalfFull",
		"HybridrtDeliveryLatencyHigh", "HybridrtPublishErrors", "HybridrtHTTPErrors"} {
		if !slices.Contains(names, want) {
			t.Errorf("no alert %s", want)
		}
	}

	doc, err := os.ReadFile(deployDoc)
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile("^#{3,4} `?(Hybridrt\\w+)`?$")
	var documented []string
	sc := bufio.NewScanner(strings.NewReader(string(doc)))
	for sc.Scan() {
		if m := heading.FindStringSubmatch(sc.Text()); m != nil {
			documented = append(documented, m[1])
		}
	}
	for _, n := range names {
		if !slices.Contains(documented, n) {
			t.Errorf("docs/deploy.md has no heading for alert %s: say what it means and what to do", n)
		}
	}
	for _, n := range documented {
		if !slices.Contains(names, n) {
			t.Errorf("docs/deploy.md explains alert %s, which %s does not have", n, alertsFile)
		}
	}
	// The instance alerts read the job of the scrape configuration the doc shows.
	if !strings.Contains(string(doc), "job_name: hybridrt") {
		t.Errorf("docs/deploy.md shows no scrape job named hybridrt, which the alerts' up{job=\"hybridrt\"} read")
	}
}

// TestDeployQueriesUseExportedMetrics: every metric that a panel, a
// dashboard variable or an alert reads is one that a running instance
// serves at /metrics (for a histogram, its _bucket, _sum and _count), and
// every label they match or group by is one of that metric's. The instance
// is driven first, so that the series that exist only once something
// happened (an SSE connection, a quota rejection, a Pusher API request, a
// failed webhook) are there.
func TestDeployQueriesUseExportedMetrics(t *testing.T) {
	t.Parallel()
	d, _ := readDashboard(t)
	queries := append(dashboardQueries(t, d), ruleQueries(readRules(t))...)

	cfg := testConfig()
	cfg.WebhookAllowPrivate = true // the failing endpoint is on loopback
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme := in.signup("Acme")
	var hooks atomic.Int64
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hooks.Add(1)
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	settings := `{"webhookUrl":"` + failing.URL + `/hook","webhookEvents":["channel_occupied"]}`
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, settings); res.status != http.StatusOK {
		t.Fatalf("PATCH settings = %d %s", res.status, res.body)
	}
	p := in.publisher(acme)
	s := in.subscribe(acme.Tenant.ID, "1", nil, []string{"broadcast"}, subscribeOpts{token: p.token("1", nil, 600)})
	s.connID()
	p.events(`{"channel":"broadcast","type":"t","data":1}`)
	s.collect(1, 5*time.Second)
	big := `{"channel":"broadcast","type":"t","data":"` + strings.Repeat("x", 70<<10) + `"}`
	if res := in.do("POST", "/v1/events", acme.APIKey, big); res.status != http.StatusRequestEntityTooLarge {
		t.Errorf("publish 70 KiB = %d %s, want 413 (a quota rejection)", res.status, res.body)
	}
	if res := in.do("POST", "/apps/"+acme.Tenant.ID+"/events", "", `{}`); res.status != http.StatusUnauthorized {
		t.Errorf("unsigned Pusher API request = %d %s, want 401", res.status, res.body)
	}

	// Scrape until every name is there: the webhook's failure takes a POST,
	// the outbox gauge a measurement (every 5 s). Series are the union of
	// the scrapes: instances of other tests in this process share the
	// gauges, and reset the outbox's when they measure theirs.
	referenced := map[string]string{} // metric → where
	parse := parser.NewParser(parser.Options{})
	type use struct{ where, metric, label string }
	var labelUses []use
	for _, q := range queries {
		e, err := parse.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
			continue
		}
		for _, vs := range selectors(e) {
			if vs.Name == "" {
				t.Errorf("%s: %s names no metric", q.where, vs)
				continue
			}
			referenced[vs.Name] = q.where
			for _, m := range vs.LabelMatchers {
				if m.Name != pmodel.MetricNameLabel {
					labelUses = append(labelUses, use{q.where, vs.Name, m.Name})
				}
			}
		}
		// A grouping label must be one of some metric aggregated.
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			if a, ok := n.(*parser.AggregateExpr); ok && !a.Without {
				for _, l := range a.Grouping {
					var ms []string
					for _, vs := range selectors(a.Expr) {
						ms = append(ms, vs.Name)
					}
					labelUses = append(labelUses, use{q.where, strings.Join(ms, "|"), l})
				}
			}
			return nil
		})
	}

	series := map[string]map[string]bool{} // name → its labels
	for name, labels := range synthetic {
		series[name] = map[string]bool{}
		for _, l := range labels {
			series[name][l] = true
		}
	}
	missing := func() []string {
		var m []string
		for name := range referenced {
			if series[name] == nil {
				m = append(m, name)
			}
		}
		slices.Sort(m)
		return m
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		res := in.do("GET", "/metrics", "", "")
		if res.status != http.StatusOK {
			t.Fatalf("GET /metrics = %d", res.status)
		}
		tp := expfmt.NewTextParser(pmodel.UTF8Validation)
		families, err := tp.TextToMetricFamilies(strings.NewReader(string(res.body)))
		if err != nil {
			t.Fatalf("/metrics: %v", err)
		}
		for name, f := range families {
			names := map[string]string{name: ""}
			switch f.GetType().String() {
			case "HISTOGRAM":
				names = map[string]string{name + "_bucket": "le", name + "_sum": "", name + "_count": ""}
			case "SUMMARY":
				names = map[string]string{name: "quantile", name + "_sum": "", name + "_count": ""}
			}
			for n, extra := range names {
				if series[n] == nil {
					series[n] = map[string]bool{"job": true, "instance": true}
				}
				if extra != "" {
					series[n][extra] = true
				}
				for _, m := range f.GetMetric() {
					for _, l := range m.GetLabel() {
						series[n][l.GetName()] = true
					}
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, name := range missing() {
		t.Errorf("%s reads %s, which /metrics does not serve", referenced[name], name)
	}
	if hooks.Load() == 0 {
		t.Errorf("the failing webhook endpoint got no POST; the webhook series were not exercised")
	}
	for _, u := range labelUses {
		var ok bool
		for _, m := range strings.Split(u.metric, "|") {
			ok = ok || series[m][u.label]
		}
		if !ok && slices.ContainsFunc(strings.Split(u.metric, "|"), func(m string) bool { return series[m] != nil }) {
			t.Errorf("%s: label %s, which %s does not have", u.where, u.label, u.metric)
		}
	}
	var used []string
	for name := range referenced {
		used = append(used, name)
	}
	slices.Sort(used)
	t.Logf("the dashboard and the alerts read %d metrics: %s", len(used), strings.Join(used, " "))
}
