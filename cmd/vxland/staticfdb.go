package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vxland/vxland/overlay/fdb"
)

// staticEntry is one entry of `vxland fdb add`: MAC behind the VTEP Dst,
// or, for the all-zero MAC, Dst on the flood list (as the kernel's
// `bridge fdb append 00:00:00:00:00:00 ... dst`).
type staticEntry struct {
	MAC string     `json:"mac"`
	Dst netip.Addr `json:"dst"`
}

// parseStaticEntry checks a MAC and a VTEP address as `vxland fdb` and the
// control socket take them. dst may be "" where it is optional (del).
func parseStaticEntry(mac, dst string) (fdb.MAC, netip.Addr, error) {
	m, err := fdb.ParseMAC(mac)
	if err != nil {
		return m, netip.Addr{}, err
	}
	if m.IsMulticast() {
		return m, netip.Addr{}, fmt.Errorf("%s is a multicast MAC: such frames always go to the flood list", m)
	}
	if dst == "" {
		return m, netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(dst)
	if err != nil || ip.Zone() != "" || !ip.Unmap().IsGlobalUnicast() {
		return m, netip.Addr{}, fmt.Errorf("dst %q is not a unicast IP address", dst)
	}
	return m, ip.Unmap(), nil
}

// staticFDB is the FDB entries added at run time with `vxland fdb add`:
// it applies them to the table as static entries (above learned and etcd
// ones) and keeps them in a file of the state directory, which a starting
// daemon reads back. A unicast entry also makes its VTEP known, so that
// its answers are accepted, as a --peer is.
type staticFDB struct {
	path  string
	vni   uint32
	self  netip.Addr
	table *fdb.Table

	mu      sync.Mutex
	entries []staticEntry
}

// staticFDBFile is where the entries of vni are kept in stateDir.
func staticFDBFile(stateDir string, vni uint32) string {
	return filepath.Join(stateDir, fmt.Sprintf("fdb-vni%d.json", vni))
}

// loadStaticFDB reads the entries an earlier run kept, if any, and puts
// them in table.
func loadStaticFDB(stateDir string, vni uint32, self netip.Addr, table *fdb.Table) (*staticFDB, error) {
	s := &staticFDB{path: staticFDBFile(stateDir, vni), vni: vni, self: self, table: table}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("static FDB: %w", err)
	}
	var kept []staticEntry
	if err := json.Unmarshal(b, &kept); err != nil {
		return nil, fmt.Errorf("static FDB %s: %w", s.path, err)
	}
	for _, e := range kept {
		dstText := ""
		if e.Dst.IsValid() {
			dstText = e.Dst.String()
		}
		mac, dst, err := s.check(e.MAC, dstText)
		if err != nil {
			return nil, fmt.Errorf("static FDB %s: %w", s.path, err)
		}
		s.apply(mac, dst)
	}
	return s, nil
}

// check validates an entry for this daemon: its MAC and its dst, which
// it needs.
func (s *staticFDB) check(macText, dstText string) (fdb.MAC, netip.Addr, error) {
	mac, dst, err := parseStaticEntry(macText, dstText)
	switch {
	case err != nil:
		return mac, dst, err
	case dstText == "":
		return mac, dst, errors.New("dst is missing")
	case dst.Is4() != s.self.Is4():
		return mac, dst, fmt.Errorf("dst %s: not the address family of this VTEP (%s)", dst, s.self)
	case dst == s.self:
		return mac, dst, fmt.Errorf("dst %s is this VTEP", dst)
	}
	return mac, dst, nil
}

// apply puts the entry in the table and the list, and reports whether it
// is new. s.mu is held, or s not yet shared.
func (s *staticFDB) apply(mac fdb.MAC, dst netip.Addr) bool {
	e := staticEntry{MAC: mac.String(), Dst: dst}
	if slices.Contains(s.entries, e) {
		return false
	}
	if mac.IsZero() {
		s.table.AddFlood(s.vni, dst, fdb.SourceStatic)
	} else {
		if i := s.find(mac); i >= 0 { // moved
			s.table.Disallow(s.entries[i].Dst, fdb.SourceStatic)
			s.entries = slices.Delete(s.entries, i, i+1)
		}
		s.table.Allow(dst, fdb.SourceStatic)
		s.table.Set(s.vni, mac, dst, fdb.OriginStatic)
	}
	s.entries = append(s.entries, e)
	return true
}

// find returns the index of the unicast entry of mac, or -1.
func (s *staticFDB) find(mac fdb.MAC) int {
	return slices.IndexFunc(s.entries, func(e staticEntry) bool { return e.MAC == mac.String() })
}

// Add adds the entry of mac, behind the VTEP dst, and keeps the list.
func (s *staticFDB) Add(mac, dst string) error {
	m, ip, err := s.check(mac, dst)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.apply(m, ip) {
		return nil
	}
	return s.save()
}

// Delete removes the entry of mac (with the all-zero MAC: the flood entry
// of dst, which it then needs) and keeps the list. It reports whether
// there was one. A valid dst must match the entry's, as with
// `bridge fdb del MAC ... dst IP`: an entry behind another VTEP stays.
func (s *staticFDB) Delete(mac fdb.MAC, dst netip.Addr) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(mac)
	if dst.IsValid() || mac.IsZero() {
		i = slices.Index(s.entries, staticEntry{MAC: mac.String(), Dst: dst})
	}
	if i < 0 {
		return false, nil
	}
	e := s.entries[i]
	if mac.IsZero() {
		s.table.RemoveFlood(s.vni, e.Dst, fdb.SourceStatic)
	} else {
		s.table.Delete(s.vni, mac, fdb.OriginStatic)
		s.table.Disallow(e.Dst, fdb.SourceStatic)
	}
	s.entries = slices.Delete(s.entries, i, i+1)
	return true, s.save()
}

// save writes the list to its file, through a temporary file and a
// rename so that a crash leaves the old list or the new one, never half
// of one; an empty list removes the file. The state directory is made,
// 0700, on the first save.
func (s *staticFDB) save() error {
	if len(s.entries) == 0 {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("static FDB: %w", err)
		}
		return nil
	}
	b, err := json.MarshalIndent(s.entries, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("static FDB: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(s.path)+".*")
	if err != nil {
		return fmt.Errorf("static FDB: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("static FDB: %w", err)
	}
	return nil
}

// handler serves POST /fdb (a staticEntry as JSON) and DELETE
// /fdb?mac=MAC[&dst=IP]. Bad input is answered 400 with the reason.
func (s *staticFDB) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fdb", func(w http.ResponseWriter, r *http.Request) {
		var in staticEntryRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
			http.Error(w, "want {\"mac\": MAC, \"dst\": IP}: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.Add(in.MAC, in.Dst); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeResult(w, true)
	})
	mux.HandleFunc("DELETE /fdb", func(w http.ResponseWriter, r *http.Request) {
		mac, dst, err := parseStaticEntry(r.URL.Query().Get("mac"), r.URL.Query().Get("dst"))
		if err == nil && mac.IsZero() && !dst.IsValid() {
			err = errors.New("the flood entry 00:00:00:00:00:00 needs dst")
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		found, err := s.Delete(mac, dst)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !found {
			http.Error(w, "no static entry for "+mac.String(), http.StatusNotFound)
			return
		}
		writeResult(w, true)
	})
	return mux
}

func writeResult(w http.ResponseWriter, ok bool) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]bool{"ok": ok})
}
