package tenant_test

import (
	"errors"
	"testing"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// TestStatus: a suspension ends the watchers on the instance that makes it
// at once, and on another instance at its next Refresh; a watcher of an
// already suspended tenant ends as it starts; a resume gives later watchers
// a fresh channel; deleting a watched tenant ends its watchers too.
func TestStatus(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	ctx := t.Context()
	var a, b tenant.ID
	for _, id := range []*tenant.ID{&a, &b} {
		if err := pool.QueryRow(ctx, `INSERT INTO tenants (name) VALUES ('t') RETURNING id`).Scan(id); err != nil {
			t.Fatal(err)
		}
	}
	here, there := tenant.NewStatus(tenant.NewStore(pool)), tenant.NewStatus(tenant.NewStore(pool))
	if s, err := there.Suspended(ctx, a); err != nil || s {
		t.Fatalf("Suspended before any suspension = %v, %v", s, err)
	}
	closed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	hereA, thereA, thereB := here.Watch(a).Done(), there.Watch(a).Done(), there.Watch(b).Done()

	acc, err := here.Suspend(ctx, a)
	if err != nil || !acc.Suspended || acc.SuspendedAt == nil {
		t.Fatalf("Suspend = %+v, %v", acc, err)
	}
	if !closed(hereA) || closed(thereA) {
		t.Errorf("after Suspend here: here ended %v, there ended %v; want here only", closed(hereA), closed(thereA))
	}
	if err := there.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !closed(thereA) || closed(thereB) {
		t.Errorf("after Refresh there: a ended %v, b ended %v; want a only", closed(thereA), closed(thereB))
	}
	if s, _ := there.Suspended(ctx, a); !s {
		t.Errorf("there: Suspended(a) = false after Refresh")
	}
	if late := there.Watch(a).Done(); !closed(late) {
		t.Errorf("a watcher of a suspended tenant did not end at once")
	}

	if _, err := there.Resume(ctx, a); err != nil {
		t.Fatal(err)
	}
	if s, _ := there.Suspended(ctx, a); s {
		t.Errorf("there: Suspended(a) = true after Resume there")
	}
	if fresh := there.Watch(a).Done(); closed(fresh) {
		t.Errorf("a watcher after the resume has already ended")
	}
	if err := here.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := here.Suspended(ctx, a); s {
		t.Errorf("here: Suspended(a) = true after Resume there and a Refresh here")
	}

	if _, err := pool.Exec(ctx, `DELETE FROM tenants WHERE id = $1`, b); err != nil {
		t.Fatal(err)
	}
	if err := there.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !closed(thereB) {
		t.Errorf("the watcher of a deleted tenant was not ended")
	}
	there.Unwatch(b)
	if _, err := here.Suspend(ctx, b); !errors.Is(err, tenant.ErrNotFound) {
		t.Errorf("Suspend of a deleted tenant = %v, want ErrNotFound", err)
	}
}
