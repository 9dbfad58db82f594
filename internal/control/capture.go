package control

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/vxland/vxland/overlay/capture"
	"github.com/vxland/vxland/overlay/fdb"
)

// Capturer is a data plane that offers what it forwards to a capture
// session (overlay.Overlay).
type Capturer interface {
	Capture(*capture.Session) (stop func(), err error)
}

// Trailers of GET /capture: how many packets were written, and how many
// passed the filter but were lost because the reader fell behind.
const (
	TrailerPackets = "Vxland-Capture-Packets"
	TrailerDropped = "Vxland-Capture-Dropped"
)

// CaptureQuery is what GET /capture takes: which packets, and for how
// long. Its URL form is what Query returns and ParseCaptureQuery reads.
type CaptureQuery struct {
	Filter capture.Filter
	// Count stops the capture after that many packets (0: no limit).
	Count int
	// Duration stops the capture after that long (0: no limit).
	Duration time.Duration
	// Snaplen bounds the bytes kept of each packet (0: whole packets).
	Snaplen int
}

// Query is q as URL query parameters.
func (q CaptureQuery) Query() string {
	v := url.Values{}
	v.Set("inner", strconv.FormatBool(q.Filter.Inner))
	v.Set("outer", strconv.FormatBool(q.Filter.Outer))
	if q.Filter.HasMAC {
		v.Set("mac", q.Filter.MAC.String())
	}
	if q.Filter.VTEP.IsValid() {
		v.Set("vtep", q.Filter.VTEP.String())
	}
	if q.Count > 0 {
		v.Set("count", strconv.Itoa(q.Count))
	}
	if q.Duration > 0 {
		v.Set("duration", q.Duration.String())
	}
	if q.Snaplen > 0 {
		v.Set("snaplen", strconv.Itoa(q.Snaplen))
	}
	return v.Encode()
}

// ParseCaptureQuery reads the query parameters of GET /capture; an error
// names the parameter.
func ParseCaptureQuery(v url.Values) (CaptureQuery, error) {
	var q CaptureQuery
	var err error
	parseBool := func(name string, dst *bool) {
		if s := v.Get(name); s != "" && err == nil {
			if *dst, err = strconv.ParseBool(s); err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	parseInt := func(name string, dst *int) {
		if s := v.Get(name); s != "" && err == nil {
			if *dst, err = strconv.Atoi(s); err != nil || *dst < 0 {
				err = fmt.Errorf("%s: %q is not a count", name, s)
			}
		}
	}
	parseBool("inner", &q.Filter.Inner)
	parseBool("outer", &q.Filter.Outer)
	parseInt("count", &q.Count)
	parseInt("snaplen", &q.Snaplen)
	if s := v.Get("mac"); s != "" && err == nil {
		if q.Filter.MAC, err = fdb.ParseMAC(s); err != nil {
			err = fmt.Errorf("mac: %q is not an Ethernet address", s)
		} else {
			q.Filter.HasMAC = true
		}
	}
	if s := v.Get("vtep"); s != "" && err == nil {
		if q.Filter.VTEP, err = netip.ParseAddr(s); err != nil {
			err = fmt.Errorf("vtep: %w", err)
		}
	}
	if s := v.Get("duration"); s != "" && err == nil {
		if q.Duration, err = time.ParseDuration(s); err != nil || q.Duration < 0 {
			err = fmt.Errorf("duration: %q is not a duration", s)
		}
	}
	return q, err
}

// CaptureHandler serves GET /capture: a pcap stream (Ethernet link type)
// of what the data plane forwards, as the query asks, until the count or
// the duration is reached or the client goes away. local is the VTEP
// address and port that outer packets are built with. The trailers
// TrailerPackets and TrailerDropped end the stream.
func CaptureHandler(dp Capturer, local netip.AddrPort) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseCaptureQuery(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s, err := capture.New(q.Filter, capture.Options{Local: local, Snaplen: q.Snaplen})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		stop, err := dp.Capture(s)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		defer stop()
		ctx := r.Context()
		if q.Duration > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, q.Duration)
			defer cancel()
		}
		w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
		w.Header().Set("Trailer", TrailerPackets+", "+TrailerDropped)
		flusher, _ := w.(http.Flusher)
		pw := pcapgo.NewWriterNanos(w)
		packets := 0
		if err := pw.WriteFileHeader(uint32(s.Snaplen()), layers.LinkTypeEthernet); err == nil {
			if flusher != nil {
				flusher.Flush()
			}
			for q.Count == 0 || packets < q.Count {
				rec, err := s.Next(ctx)
				if err != nil {
					break
				}
				ci := gopacket.CaptureInfo{Timestamp: rec.Time, CaptureLength: len(rec.Data), Length: rec.Length}
				err = pw.WritePacket(ci, rec.Data)
				s.Release(rec)
				if err != nil {
					break
				}
				packets++
				if flusher != nil {
					flusher.Flush()
				}
			}
		}
		w.Header().Set(TrailerPackets, strconv.Itoa(packets))
		w.Header().Set(TrailerDropped, strconv.FormatUint(s.Dropped(), 10))
	}
}

// CaptureResult is what the end of a capture stream says.
type CaptureResult struct {
	Packets, Dropped uint64
}

// Capture asks the daemon at the socket path for a capture and copies
// the pcap stream to out until it ends (or ctx is done, which ends it
// cleanly too).
func Capture(ctx context.Context, path string, q CaptureQuery, out io.Writer) (CaptureResult, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vxland/capture?"+q.Query(), nil)
	if err != nil {
		return CaptureResult{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return CaptureResult{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return CaptureResult{}, fmt.Errorf("control socket %s: capture: %s: %s", path, resp.Status, b)
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		if ctx.Err() != nil {
			return CaptureResult{}, nil // stopped by the caller: what came is written
		}
		return CaptureResult{}, fmt.Errorf("control socket %s: capture: %w", path, err)
	}
	var res CaptureResult
	res.Packets, _ = strconv.ParseUint(resp.Trailer.Get(TrailerPackets), 10, 64)
	res.Dropped, _ = strconv.ParseUint(resp.Trailer.Get(TrailerDropped), 10, 64)
	return res, nil
}
