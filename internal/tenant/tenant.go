// Package tenant owns tenants: the accounts that publish events and whose
// users subscribe to them. Every other table hangs off a tenant id, and every
// query filters on it.
package tenant

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ID identifies a tenant.
type ID int64

// ErrNotFound is returned when a tenant does not exist.
var ErrNotFound = errors.New("tenant: not found")

// Tenant is an account of the service.
type Tenant struct {
	ID        ID        `json:"id,string"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
	Settings  Settings  `json:"settings"` // the tenant's own; not the operator's quotas
}

// MaxNameLen is the longest tenant name, in characters.
const MaxNameLen = 100

// CleanName trims name and checks that it is 1–100 printable characters.
func CleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", errors.New(`"name" is required: give the tenant a name, such as your product's`)
	case utf8.RuneCountInString(name) > MaxNameLen:
		return "", fmt.Errorf(`"name" is longer than %d characters`, MaxNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return "", fmt.Errorf(`"name" contains the non-printable character %U`, r)
		}
	}
	return name, nil
}

type ctxKey struct{}

// WithID returns ctx carrying the tenant id of an authenticated request.
func WithID(ctx context.Context, id ID) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the tenant id that authentication put in ctx. It panics
// when there is none: a handler that needs a tenant must sit behind the
// middleware that sets one, and mounting it elsewhere is a programming error.
func FromContext(ctx context.Context) ID {
	id, ok := ctx.Value(ctxKey{}).(ID)
	if !ok {
		panic("tenant: no tenant in context; is the handler behind auth.RequireAPIKey?")
	}
	return id
}

// Lookup returns the tenant in ctx, if there is one.
func Lookup(ctx context.Context) (ID, bool) {
	id, ok := ctx.Value(ctxKey{}).(ID)
	return id, ok
}
