//go:build !linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"github.com/vxland/vxland/internal/netlab"
)

func echoRTT(context.Context, *netlab.NS, netip.Addr, int, time.Duration, []int) ([]float64, int, error) {
	return nil, 0, fmt.Errorf("raw ICMP sockets in network namespaces need Linux, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
