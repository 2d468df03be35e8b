package views

// Webhooks is the webhooks page: the settings form, what a webhook looks
// like and what signs it, the test button's answer, and the deliveries.
type Webhooks struct {
	Settings   WebhookSettings
	Off        bool   // no webhook URL is saved: webhooks are off
	NoEvents   bool   // a URL is saved but no event is chosen
	Key        string // the kid whose secret signs webhooks; "" when the tenant has no active signing key
	Test       *Notice
	Deliveries WebhookDeliveries
}

// WebhookSettings is the settings form: "webhookUrl" in Form, one box an
// event, and field errors under "webhookUrl" and "webhookEvents".
type WebhookSettings struct {
	Form   Form
	Events []WebhookEventOption
	Saved  string // "Settings saved." after a save, else ""
}

// WebhookEventOption is one event's checkbox.
type WebhookEventOption struct {
	Name, Hint string
	Checked    bool
}

// Notice is a one-line answer to a button, a success or a failure.
type Notice struct {
	Text   string
	Failed bool
}

// WebhookDeliveries is the polled part of the webhooks page: how many
// events wait in the outbox, the last delivery attempts, and Retry now.
type WebhookDeliveries struct {
	CSRF            string // for the Retry now form
	Waiting, Parked string
	Rows            []WebhookDeliveryRow
	More            bool // older attempts are not listed
	CanRetry        bool // events are parked, or a batch is waiting out a retry
}

// WebhookDeliveryRow is one delivery attempt. Empty Status, NextRetry and
// Error are shown as none.
type WebhookDeliveryRow struct {
	ID, Time, DateTime, Events, Outcome, Status, Latency, Attempt, NextRetry, Error string
}

// outcomeBadge is the class of a delivery's outcome badge.
func outcomeBadge(outcome string) string {
	switch outcome {
	case "delivered", "retrying", "parked", "test":
		return "badge " + outcome
	}
	return "badge"
}

// webhookExample is the body of a webhook, as the page shows it.
const webhookExample = `{
  "time_ms": 1767225600000,
  "events": [
    { "name": "channel_occupied", "channel": "presence-room" },
    { "name": "member_added", "channel": "presence-room", "user_id": "42" }
  ]
}`
