package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/overlay/fdb"
)

func TestStaticFDB(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	self := netip.MustParseAddr("192.0.2.1")
	vtepA, vtepB := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	mac := fdb.MAC{0x02, 0x42, 0x0a, 0, 0, 2}
	table := fdb.New(4789, time.Minute)
	// What was learned and what etcd says give way to a static entry.
	table.Set(7, mac, vtepA, fdb.OriginRemote)
	s, err := loadStaticFDB(dir, 7, self, table)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(mac.String(), vtepB.String()); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("00:00:00:00:00:00", vtepA.String()); err != nil {
		t.Fatal(err)
	}
	check := func(tb *fdb.Table, when string) {
		t.Helper()
		e, ok := tb.Entry(7, mac)
		if !ok || e.VTEP.Addr() != vtepB || e.Origin != fdb.OriginStatic.String() {
			t.Fatalf("%s: entry %+v, %v; want static to %s", when, e, ok, vtepB)
		}
		if fl := tb.Flood(7); len(fl) != 1 || fl[0].AddrPort().Addr() != vtepA {
			t.Fatalf("%s: flood list %v, want %s", when, fl, vtepA)
		}
		if _, ok := tb.KnownVTEP(vtepB); !ok {
			t.Fatalf("%s: the static entry's VTEP %s is not accepted", when, vtepB)
		}
	}
	check(table, "after add")
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state directory: %v, %v; want mode 0700", st, err)
	}
	table.Learn(7, mac, vtepA)
	check(table, "after learning the MAC behind another VTEP")

	// A restart reads them back.
	table2 := fdb.New(4789, time.Minute)
	if _, err := loadStaticFDB(dir, 7, self, table2); err != nil {
		t.Fatal(err)
	}
	check(table2, "after a restart")

	// del with a dst removes only the entry behind that VTEP.
	if found, err := s.Delete(mac, vtepA); found || err != nil {
		t.Fatalf("delete of %s dst %s, which is behind %s: %v, %v; want not found", mac, vtepA, vtepB, found, err)
	}
	check(table, "after a delete naming another VTEP")

	// del removes the entry, the VTEP it alone made known, and the file
	// with the last entry.
	if found, err := s.Delete(mac, netip.Addr{}); !found || err != nil {
		t.Fatalf("delete: %v, %v", found, err)
	}
	if _, ok := table.Entry(7, mac); ok {
		t.Fatal("the entry is still there")
	}
	if _, ok := table.KnownVTEP(vtepB); ok {
		t.Fatalf("%s is still accepted", vtepB)
	}
	if found, _ := s.Delete(fdb.MAC{}, vtepB); found {
		t.Fatal("deleted a flood entry that was never added")
	}
	if found, err := s.Delete(fdb.MAC{}, vtepA); !found || err != nil || len(table.Flood(7)) != 0 {
		t.Fatalf("delete of the flood entry: %v, %v; flood list %v", found, err, table.Flood(7))
	}
	if _, err := os.Stat(staticFDBFile(dir, 7)); !os.IsNotExist(err) {
		t.Fatalf("the file is still there: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

func TestStaticFDBRejects(t *testing.T) {
	s, err := loadStaticFDB(t.TempDir(), 7, netip.MustParseAddr("192.0.2.1"), fdb.New(4789, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mac, dst, want string
	}{
		{"01:00:5e:00:00:01", "192.0.2.2", "multicast"},
		{"02:42:0a:00:00:02", "2001:db8::1", "family"},
		{"02:42:0a:00:00:02", "192.0.2.1", "this VTEP"},
		{"02:42:0a:00:00:02", "224.0.0.1", "unicast"},
		{"02:42:0a:00:00:02", "", "dst is missing"},
		{"02:42:0a:00:00:02:03:04", "192.0.2.2", "not an Ethernet address"},
	} {
		if err := s.Add(tc.mac, tc.dst); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("add %s dst %q: %v, want an error about %s", tc.mac, tc.dst, err, tc.want)
		}
	}
	// A file that is not a list of entries stops the start, naming it.
	dir := t.TempDir()
	if err := os.WriteFile(staticFDBFile(dir, 7), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadStaticFDB(dir, 7, netip.MustParseAddr("192.0.2.1"), fdb.New(4789, 0)); err == nil || !strings.Contains(err.Error(), "fdb-vni7.json") {
		t.Fatalf("corrupt file: %v", err)
	}
}

// vxland fdb refuses bad input with exit status 2 before asking anyone.
func TestFDBCommandRejects(t *testing.T) {
	for _, args := range [][]string{
		{"add", "02:42:0a:00:00:zz", "dst", "192.0.2.2"},
		{"add", "02:42:0a:00:00:02", "dst", "192.0.2.300"},
		{"add", "02:42:0a:00:00:02", "192.0.2.2"},
		{"add", "02:42:0a:00:00:02", "dst", "192.0.2.2", "port", "8472"},
		{"del", "00:00:00:00:00:00"},
		{"del"},
		{"flush"},
	} {
		var stdout, stderr bytes.Buffer
		code := fdbCommand(append(args, "--control-socket", "/nonexistent/x.sock"), func(string) string { return "" }, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "vxland fdb") {
			t.Errorf("%v: exit %d, %q; want 2 and a message", args, code, stderr.String())
		}
	}
}

// The control socket checks what it is sent as the command does.
func TestStaticFDBHandlerRejects(t *testing.T) {
	s, err := loadStaticFDB(t.TempDir(), 7, netip.MustParseAddr("192.0.2.1"), fdb.New(4789, 0))
	if err != nil {
		t.Fatal(err)
	}
	h := s.handler()
	for _, tc := range []struct{ method, target, body string }{
		{"POST", "/fdb", `{"mac": "02:42:0a:00:00:zz", "dst": "192.0.2.2"}`},
		{"POST", "/fdb", `{"mac": "02:42:0a:00:00:02", "dst": "not-an-ip"}`},
		{"POST", "/fdb", `{"mac": "02:42:0a:00:00:02"}`},
		{"POST", "/fdb", `[`},
		{"DELETE", "/fdb?mac=nope", ""},
		{"DELETE", "/fdb?mac=00:00:00:00:00:00", ""},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body)))
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s %s %s: %d %s, want 400", tc.method, tc.target, tc.body, w.Code, w.Body)
		}
	}
	if len(s.entries) != 0 {
		t.Fatalf("bad requests left entries: %v", s.entries)
	}
}
