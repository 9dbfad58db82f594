//go:build !linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/vxland/vxland/internal/netlab"
)

func requestResponse(context.Context, *netlab.NS, *netlab.NS, string, time.Duration, []int) (*RRRun, error) {
	return nil, fmt.Errorf("sockets in network namespaces need Linux, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
