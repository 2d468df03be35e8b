package views

import (
	"cmp"
	"slices"
	"strings"
)

// Usage is the Usage page: a range of days, by day or by month, and what
// the tenant used in each, with their total.
type Usage struct {
	Form   Form   // "granularity" (day or month), "from" and "to" (YYYY-MM-DD); an error under "range"
	Period string // "day" or "month": what a row is
	Range  string // "2026-03-01 to 2026-03-31", for the table's caption
	Rows   []UsageRow
	Total  UsageRow
	CSV    string // the same range as CSV
}

// UsageRow is one day's or month's usage, or their total.
type UsageRow struct {
	Period               string // "2026-03-03", "2026-03", or "Total"
	API, Pusher, Client  int64  // events published, by door
	Published            int64  // by every door
	Deliveries, Bytes    int64
	Peak                 int64 // the most connections at once
	WebhooksSent, Failed int64
	Rejected             int64
	RejectedBy           map[string]int64 // by reason
}

// rejectedBy lists the reasons of the refusals, most first: "rate 12, connections 3".
func (r UsageRow) rejectedBy() string {
	reasons := make([]string, 0, len(r.RejectedBy))
	for k, v := range r.RejectedBy {
		if v > 0 {
			reasons = append(reasons, k)
		}
	}
	slices.SortFunc(reasons, func(a, b string) int { // most first, then by name
		return cmp.Or(cmp.Compare(r.RejectedBy[b], r.RejectedBy[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(reasons))
	for i, k := range reasons {
		parts[i] = strings.ReplaceAll(k, "_", " ") + " " + Count(r.RejectedBy[k])
	}
	return strings.Join(parts, ", ")
}

// Operator is the operator view: the charts of the whole service or of
// one tenant, the top tenants, the instances and every tenant.
type Operator struct {
	Charts           UsageCharts
	Tenant           string // the id of the tenant the charts show; "" for the whole service
	TopByEvents      []TopTenant
	TopByConnections []TopTenant
	Instances        []InstanceRow
	Tenants          []TenantRow
}

// TopTenant is one line of a top-tenants list.
type TopTenant struct {
	ID, Name, Value string
	Href            string // the operator view of this tenant
	Current         bool   // the charts show this tenant
}
