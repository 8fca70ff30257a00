package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The namespace and temp dir of a run are named nsPrefix<pid>, so that a
// later run can tell a crashed run's leftovers from a live run's.
const nsPrefix = "wfd-"

const (
	cmdTimeout  = 15 * time.Second // one short command (ip, the weft CLI, nsd-checkconf)
	stopTimeout = 5 * time.Second  // SIGTERM to exit, then again after SIGKILL
	pollEvery   = 100 * time.Millisecond
)

// A lab is one network namespace with its loopback up, the processes
// started in it and a temp dir for their files. Every server and client of
// the benchmark runs in it, so that all traffic stays on its loopback.
type lab struct {
	ns  string
	dir string

	mu    sync.Mutex
	procs []*proc
	nsOK  bool // the namespace exists and must be deleted
}

// A proc is a long-running process in the namespace, in a process group
// of its own (NSD forks workers), with its output in a log file.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed once waited for
	err  error
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// newLab makes the temp dir and the namespace. On error the lab made so far
// is returned too, for the caller to clean up.
func newLab(ctx context.Context) (*lab, error) {
	pid := os.Getpid()
	l := &lab{ns: fmt.Sprintf("%s%d", nsPrefix, pid)}
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", nsPrefix, pid))
	if err != nil {
		return l, err
	}
	l.dir = dir
	// NSD and the agent read their files as root; 0755 so that nothing
	// depends on who reads them.
	if err := os.Chmod(dir, 0o755); err != nil {
		return l, err
	}
	l.mu.Lock()
	l.nsOK = true // recorded first, so that a half-made namespace is still deleted
	l.mu.Unlock()
	if err := ipCmd(ctx, "netns", "add", l.ns); err != nil {
		return l, err
	}
	if err := ipCmd(ctx, "-n", l.ns, "link", "set", "lo", "up"); err != nil {
		return l, err
	}
	return l, nil
}

// removeStale deletes the namespaces and temp dirs of earlier runs whose
// process is gone: a run killed with SIGKILL cannot clean up after itself
// (its servers get SIGTERM as it dies, see lab.start).
func removeStale(say func(string, ...any)) {
	dead := func(name string) bool {
		rest, ok := strings.CutPrefix(name, nsPrefix)
		if !ok {
			return false
		}
		digits, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(digits)
		if err != nil || pid == os.Getpid() {
			return false
		}
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			if dead(name) {
				say("removing namespace %s of an earlier run that did not finish", name)
				_ = ipCmd(ctx, "netns", "del", name)
			}
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), nsPrefix+"*"))
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && dead(filepath.Base(d)) {
			say("removing %s of an earlier run that did not finish", d)
			_ = os.RemoveAll(d)
		}
	}
}

// ipCmd runs ip(8) with a time limit.
func ipCmd(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// inNS returns argv prefixed to run in the namespace. ip netns exec execs
// the command, so the process started is the command itself.
func (l *lab) inNS(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", l.ns}, argv...)
}

// run runs a short command in the namespace with a time limit and returns
// its stdout; on failure the error carries stderr.
func (l *lab) run(ctx context.Context, timeout time.Duration, env []string, argv ...string) ([]byte, error) {
	out, _, err := l.runUsage(ctx, timeout, env, argv...)
	return out, err
}

// runUsage is run that also returns the CPU time (user+system) the command
// used.
func (l *lab) runUsage(ctx context.Context, timeout time.Duration, env []string, argv ...string) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	full := l.inNS(argv...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A killed command's children (none expected) must not hold the pipes
	// open past the time limit; nor the command outlive this program.
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		return stdout.Bytes(), 0, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, msg)
	}
	return stdout.Bytes(), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// start starts a long-running process in the namespace. Its output goes to
// <dir>/<name>.log; cleanup stops its process group.
func (l *lab) start(name string, env []string, argv ...string) (*proc, error) {
	logPath := filepath.Join(l.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	full := l.inNS(argv...)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own group, so that cleanup reaches the workers it forks; and
	// SIGTERM if this program dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// waitFor polls check until it is true, the process exits, the time is up
// or ctx ends; the error says what was last seen.
func waitFor(ctx context.Context, p *proc, timeout time.Duration, what string, check func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	last := "nothing yet"
	for {
		ok, seen := check()
		if ok {
			return nil
		}
		if seen != "" {
			last = seen
		}
		if p != nil && p.exited() {
			return fmt.Errorf("waiting for %s: %s exited (%v); log %s:\n%s", what, p.name, p.err, p.log, tail(p.log, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: none after %s; last seen: %s", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cleanup stops every process (group), deletes the namespace and the temp
// dir. It runs on every exit path, with its own time limits, since ctx may
// already be cancelled.
func (l *lab) cleanup(keep bool, say func(string, ...any)) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	procs, nsOK := l.procs, l.nsOK
	l.procs, l.nsOK = nil, false
	l.mu.Unlock()

	var errs []error
	for _, p := range procs {
		if err := stopGroup(p); err != nil {
			errs = append(errs, err)
		}
	}
	if nsOK {
		if err := ipCmd(context.Background(), "netns", "del", l.ns); err != nil {
			errs = append(errs, err)
		}
	}
	if l.dir != "" {
		if keep {
			say("kept %s", l.dir)
		} else if err := os.RemoveAll(l.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopGroup sends SIGTERM to p's process group, then SIGKILL if it has not
// exited in time. The group's other members (NSD's workers) go with the
// leader: they are signalled too.
func stopGroup(p *proc) error {
	pgid := p.cmd.Process.Pid
	if !p.exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(stopTimeout):
				return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pgid)
			}
		}
	}
	// Workers that outlived their leader.
	if err := syscall.Kill(-pgid, 0); err == nil {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	return nil
}
