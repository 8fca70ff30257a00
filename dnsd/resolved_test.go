package dnsd

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolvectlCommands(t *testing.T) {
	var ran []string
	r := &Resolvectl{run: func(_ context.Context, name string, args ...string) ([]byte, error) {
		ran = append(ran, name+" "+strings.Join(args, " "))
		return nil, nil
	}}
	servers := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8600"), netip.MustParseAddrPort("[fd00::1]:53")}
	if err := r.SetLinkDNS("wf-web", servers, []string{"weft.internal", "~90.10.in-addr.arpa."}); err != nil {
		t.Fatal(err)
	}
	if err := r.RevertLink("wf-web"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"resolvectl domain wf-web ~weft.internal ~90.10.in-addr.arpa",
		"resolvectl default-route wf-web false",
		"resolvectl dns wf-web 127.0.0.1:8600 fd00::1",
		"resolvectl revert wf-web",
	}
	if diff := cmp.Diff(want, ran); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestResolvectlErrors(t *testing.T) {
	r := &Resolvectl{run: func(context.Context, string, ...string) ([]byte, error) {
		return []byte("Failed to resolve interface \"wf-x\": No such device\n"), errors.New("exit status 1")
	}}
	err := r.SetLinkDNS("wf-x", []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8600")}, []string{"weft.internal"})
	if err == nil || !strings.Contains(err.Error(), "No such device") || !strings.HasPrefix(err.Error(), "dnsd: resolvectl domain wf-x") {
		t.Errorf("err = %v: want the command and resolvectl's own message", err)
	}
	for _, bad := range []func() error{
		func() error { return r.SetLinkDNS("", nil, nil) },
		func() error { return r.SetLinkDNS("wf-x", nil, []string{"weft.internal"}) },
		func() error {
			return r.SetLinkDNS("wf-x", []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}, []string{"~"})
		},
		func() error { return r.RevertLink("") },
	} {
		if err := bad(); err == nil {
			t.Error("bad arguments accepted")
		}
	}
}

func TestFakeResolved(t *testing.T) {
	f := NewFakeResolved()
	srv := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8600")}
	if err := f.SetLinkDNS("wf-web", srv, []string{"weft.internal"}); err != nil {
		t.Fatal(err)
	}
	if l, ok := f.Link("wf-web"); !ok || !cmp.Equal(l.Servers, srv, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })) {
		t.Errorf("Link = %v, %v", l, ok)
	}
	f.FailWith(errors.New("boom"))
	if err := f.RevertLink("wf-web"); err == nil {
		t.Error("FailWith did not fail")
	}
	f.FailWith(nil)
	if err := f.RevertLink("wf-web"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Link("wf-web"); ok {
		t.Error("link still set after revert")
	}
	var ops []string
	for _, c := range f.Calls() {
		ops = append(ops, c.Op+" "+c.Link)
	}
	if diff := cmp.Diff([]string{"set wf-web", "revert wf-web", "revert wf-web"}, ops); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}
