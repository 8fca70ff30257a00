package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/weft-mesh/weft/config"
)

// checker runs the health checks of this host's services and announces
// the failing ones through gossip (setFailing): a check flapping never
// writes to Raft. A checked service counts as failing until its first
// check passes.
type checker struct {
	log        *slog.Logger
	setFailing func([]string)

	mu      sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	passing map[string]bool // by service, for checked services
}

// set replaces the checked services (at start and on reload).
func (ck *checker) set(services []config.Service) {
	ck.stop()
	ctx, cancel := context.WithCancel(context.Background())
	ck.mu.Lock()
	ck.cancel = cancel
	ck.passing = map[string]bool{}
	for _, s := range services {
		if s.Check != nil {
			ck.passing[s.Name] = false
		}
	}
	ck.mu.Unlock()
	ck.announce()
	for _, s := range services {
		if s.Check == nil {
			continue
		}
		ck.wg.Add(1)
		go func() {
			defer ck.wg.Done()
			ck.loop(ctx, s.Name, *s.Check)
		}()
	}
}

func (ck *checker) stop() {
	ck.mu.Lock()
	cancel := ck.cancel
	ck.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	ck.wg.Wait()
}

func (ck *checker) loop(ctx context.Context, service string, c config.Check) {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		err := runCheck(ctx, c)
		if ctx.Err() != nil {
			return
		}
		ck.record(service, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (ck *checker) record(service string, err error) {
	ck.mu.Lock()
	was, known := ck.passing[service]
	if !known {
		ck.mu.Unlock()
		return
	}
	ck.passing[service] = err == nil
	ck.mu.Unlock()
	switch {
	case err == nil && !was:
		ck.log.Info("service check passing", "service", service)
	case err != nil && was:
		ck.log.Warn("service check failing", "service", service, "err", err)
	}
	if (err == nil) != was {
		ck.announce()
	}
}

func (ck *checker) announce() {
	ck.mu.Lock()
	var failing []string
	for name, ok := range ck.passing {
		if !ok {
			failing = append(failing, name)
		}
	}
	ck.mu.Unlock()
	slices.Sort(failing)
	ck.setFailing(failing)
}

// runCheck runs one TCP or HTTP check within its timeout.
func runCheck(ctx context.Context, c config.Check) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	if c.TCP != "" {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.TCP)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.HTTP, nil)
	if err != nil {
		return err
	}
	resp, err := checkClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// checkClient never follows redirects: a check answers for itself.
var checkClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}
