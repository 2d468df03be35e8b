package webhook

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url          string
		allowPrivate bool
		want         string // in the error; "" for none
	}{
		{"https://example.com/pusher/webhook", false, ""},
		{"https://example.com:8443/hook?token=abc", false, ""},
		{"https://[2606:4700::1111]/hook", false, ""},
		{"https://93.184.215.14/hook", false, ""},
		{"http://localhost:3000/hook", true, ""},
		{"http://10.0.0.5/hook", true, ""},
		{"", false, "is empty"},
		{"https://example.com/" + strings.Repeat("a", 2048), false, "longer than 2048"},
		{"https://exa mple.com/", false, "not a valid URL"},
		{"/pusher/webhook", false, "must be absolute"},
		{"example.com/hook", false, "must be absolute"},
		{"https:example.com", false, "must be absolute"},
		{"http://example.com/hook", false, "must use https: plain http is allowed only when the operator sets WEBHOOK_ALLOW_PRIVATE=true"},
		{"ftp://example.com/hook", false, `must use https, not "ftp"`},
		{"ftp://example.com/hook", true, `must use https, not "ftp"`},
		{"https:///hook", false, "has no host"},
		{"https://:443/hook", false, "has no host"},
		{"https://user:hunter2@example.com/hook", false, "must not carry a user name or password"},
		{"https://user@example.com/hook", false, "must not carry a user name or password"},
		{"https://example.com/hook#part", false, "must not have a #fragment"},
		{"https://example.com/hook#", false, "must not have a #fragment"},
		{"https://example.com:0/hook", false, "port 0"},
		{"https://example.com:70000/hook", false, "port 70000"},
		{"https://127.0.0.1/hook", false, "points to 127.0.0.1, a loopback address"},
		{"https://10.1.2.3/hook", false, "points to 10.1.2.3, a private address"},
		{"https://169.254.169.254/latest/meta-data/", false, "points to 169.254.169.254, the cloud metadata address"},
		{"https://[::1]/hook", false, "points to ::1, a loopback address"},
		{"https://[::ffff:127.0.0.1]/hook", false, "points to ::ffff:127.0.0.1, an IPv4-mapped form of 127.0.0.1, a loopback address"},
		{"https://[fe80::1%25eth0]/hook", false, "points to fe80::1%eth0, a link-local address"},
		{"https://[fd00:ec2::254]/hook", false, "points to fd00:ec2::254, the cloud metadata address"},
	}
	for _, tt := range tests {
		err := CheckURL(tt.url, tt.allowPrivate)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckURL(%q, %v) = %v, want nil", tt.url, tt.allowPrivate, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckURL(%q, %v) = %v, want an error containing %q", tt.url, tt.allowPrivate, err, tt.want)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("CheckURL(%q, %v) = %v, which repeats the password", tt.url, tt.allowPrivate, err)
		}
		if internal := strings.Contains(tt.want, "points to"); err != nil && errors.Is(err, ErrInternalAddress) != internal {
			t.Errorf("CheckURL(%q, %v) = %v: errors.Is(err, ErrInternalAddress) = %v, want %v", tt.url, tt.allowPrivate, err, !internal, internal)
		}
	}
}
