package config

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"
)

const (
	// minCheckInterval keeps a typo such as "10ms" for "10s" from turning a
	// health check into a load test of the service.
	minCheckInterval = 100 * time.Millisecond
	// maxUID is the largest uid: uid_t is 32 bits, and (uid_t)-1 means
	// "no user" to setresuid and friends, so it names nobody.
	maxUID = 1<<32 - 2
)

// serviceTagRE is stricter than tagRE: no '.', so that a service tag can
// be one label of a DNS name (tag.service.domain).
var serviceTagRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// report records a problem with key; build passes one that also marks the
// key as spoiled, so that check does not judge it again.
type report func(key, summary, detail string)

// buildServices applies the defaults to the merged service blocks and
// parses their durations. Runtime holds the services sorted by name.
func buildServices(files []serviceFile, bad report) []Service {
	var out []Service
	for _, f := range files {
		key := serviceKey(f.Name)
		s := Service{Name: f.Name}
		setInt(&s.Port, f.Port)
		if f.Tags != nil && len(*f.Tags) > 0 {
			s.Tags = slices.Compact(slices.Sorted(slices.Values(*f.Tags)))
		}
		if c := f.Check; c != nil {
			s.Check = &Check{Interval: DefaultCheckInterval, Timeout: DefaultCheckTimeout}
			setString(&s.Check.TCP, c.TCP)
			setString(&s.Check.HTTP, c.HTTP)
			parseDuration(&s.Check.Interval, c.Interval, key+subCheckInterval, "Invalid service.check.interval", f.Name, bad)
			parseDuration(&s.Check.Timeout, c.Timeout, key+subCheckTimeout, "Invalid service.check.timeout", f.Name, bad)
		}
		if id := f.Identity; id != nil {
			if id.UID == nil {
				// Runtime cannot tell an unset uid from root's, and
				// defaulting to root is the wrong way to fail.
				bad(key+subIdentity, "Missing service.identity.uid", fmt.Sprintf(
					"service %q: an identity block needs the uid of the local user that may fetch the service's identity", f.Name))
			} else {
				s.Identity = &ServiceIdentity{UID: *id.UID}
			}
		}
		for _, u := range f.Upstreams {
			up := Upstream{Service: u.Name}
			setString(&up.Listen, u.Listen)
			s.Upstreams = append(s.Upstreams, up)
		}
		slices.SortFunc(s.Upstreams, func(a, b Upstream) int { return cmp.Compare(a.Service, b.Service) })
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Service) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func setString(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

// parseDuration sets dst from v when v is set; service names the service
// the key belongs to, or is "" for a top-level block.
func parseDuration(dst *time.Duration, v *string, key, summary, service string, bad report) {
	if v == nil {
		return
	}
	d, err := time.ParseDuration(*v)
	if err != nil {
		bad(key, summary, inService(service, fmt.Sprintf("%q is not a duration such as \"10s\" or \"500ms\"", *v)))
		return
	}
	*dst = d
}

// inService prefixes a detail with the service it is about, since a
// diagnostic's line alone does not say which service block that is when
// the value is a default.
func inService(service, detail string) string {
	if service == "" {
		return detail
	}
	return fmt.Sprintf("service %q: %s", service, detail)
}

// services checks the service blocks.
func (c *checker) services(ss []Service) {
	seen := map[string]bool{}
	for _, s := range ss {
		key := serviceKey(s.Name)
		if !c.want(key) {
			continue
		}
		if seen[s.Name] {
			c.add(key, "Duplicate service", fmt.Sprintf("service %q is defined twice: service names must be unique", s.Name))
			continue
		}
		seen[s.Name] = true
		if !dnsLabel.MatchString(s.Name) {
			c.add(key, "Invalid service name", fmt.Sprintf(
				"%q is not a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'", s.Name))
		}

		if c.want(key + subPort) {
			switch {
			case s.Port == 0 && !c.src.set(key+subPort):
				c.add(key, "Missing service.port", inService(s.Name, "a service needs the port it listens on"))
			case s.Port < 1 || s.Port > 65535:
				c.add(key+subPort, "Invalid service.port", inService(s.Name, fmt.Sprintf("%d is not a port: it must be in 1..65535", s.Port)))
			}
		}

		if c.want(key + subTags) {
			for _, t := range s.Tags {
				if !serviceTagRE.MatchString(t) {
					c.add(c.elemKey(key+subTags, t), "Invalid service tag", inService(s.Name, fmt.Sprintf(
						"%q must start with a-z or 0-9, and hold only a-z, 0-9, '_' and '-', at most 63 in all", t)))
				}
			}
		}

		if s.Check != nil && c.want(key+subCheck) {
			c.check(key, s.Name, *s.Check)
		}

		if id := s.Identity; id != nil && c.want(key+subIdentityUID) && (id.UID < 0 || id.UID > maxUID) {
			c.add(key+subIdentityUID, "Invalid service.identity.uid", inService(s.Name, fmt.Sprintf(
				"%d is not a uid: it must be in 0..%d", id.UID, maxUID)))
		}

		c.upstreams(s)
	}
}

func (c *checker) check(key, service string, ck Check) {
	if c.want(key+subCheckTCP, key+subCheckHTTP) {
		switch {
		case ck.TCP == "" && ck.HTTP == "":
			c.add(key+subCheck, "Invalid service.check", inService(service, "a check needs one of tcp and http"))
		case ck.TCP != "" && ck.HTTP != "":
			c.add(key+subCheck, "Invalid service.check", inService(service, "a check has either tcp or http, not both"))
		case ck.TCP != "":
			if why := hostPortRequired(ck.TCP); why != "" {
				c.add(key+subCheckTCP, "Invalid service.check.tcp", inService(service, fmt.Sprintf("%q: %s", ck.TCP, why)))
			}
		default:
			if why := httpURLProblem(ck.HTTP); why != "" {
				c.add(key+subCheckHTTP, "Invalid service.check.http", inService(service, fmt.Sprintf("%q: %s", ck.HTTP, why)))
			}
		}
	}

	iv, to := key+subCheckInterval, key+subCheckTimeout
	if c.want(iv) && ck.Interval < minCheckInterval {
		c.add(iv, "Invalid service.check.interval", inService(service, fmt.Sprintf(
			"%s is less than %s", ck.Interval, minCheckInterval)))
	}
	if !c.want(to) {
		return
	}
	switch {
	case ck.Timeout <= 0:
		c.add(to, "Invalid service.check.timeout", inService(service, fmt.Sprintf("%s must be more than 0s", ck.Timeout)))
	case ck.Timeout >= ck.Interval && c.want(iv):
		// Point at the one a file set; if both were, at the timeout.
		at, summary := to, "Invalid service.check.timeout"
		if !c.src.set(to) && c.src.set(iv) {
			at, summary = iv, "Invalid service.check.interval"
		}
		c.add(at, summary, inService(service, fmt.Sprintf(
			"timeout %s%s must be less than interval %s%s: a check must end before the next one starts",
			ck.Timeout, c.defaultNote(to), ck.Interval, c.defaultNote(iv))))
	}
}

// defaultNote says that the value of key was not set in a file, when it
// was not; it says nothing for a Runtime built in code.
func (c *checker) defaultNote(key string) string {
	if c.src == nil || c.src.set(key) {
		return ""
	}
	return " (the default)"
}

func (c *checker) upstreams(s Service) {
	seen := map[string]bool{}
	for _, u := range s.Upstreams {
		key := upstreamKey(s.Name, u.Service)
		if !c.want(key) {
			continue
		}
		if seen[u.Service] {
			c.add(key, "Duplicate upstream", inService(s.Name, fmt.Sprintf("upstream %q is defined twice", u.Service)))
			continue
		}
		seen[u.Service] = true
		if !dnsLabel.MatchString(u.Service) {
			c.add(key, "Invalid upstream name", inService(s.Name, fmt.Sprintf(
				"upstream %q must name a service: a DNS label of 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'", u.Service)))
		}
		if !c.want(key + subListen) {
			continue
		}
		switch why := listenProblem(u.Listen); {
		case u.Listen == "":
			c.add(key, "Missing service.upstream.listen", inService(s.Name, fmt.Sprintf(
				"upstream %q needs the local \"host:port\" to listen on", u.Service)))
		case why != "":
			c.add(key+subListen, "Invalid service.upstream.listen", inService(s.Name, fmt.Sprintf(
				"upstream %q: %q: %s", u.Service, u.Listen, why)))
		}
	}
}

// hostPortRequired says why s is not "host:port", or "". Unlike a join
// address, the port cannot be left out.
func hostPortRequired(s string) string {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "want \"host:port\""
	}
	return hostPortProblem(s)
}

// listenProblem says why s is not a "host:port" to listen on, or "".
func listenProblem(s string) string {
	if h, _, err := net.SplitHostPort(s); err == nil && h == "" {
		return "the host is empty: write 0.0.0.0 or [::] to listen on every address"
	}
	return hostPortRequired(s)
}

// httpURLProblem says why s is not an http or https URL with a host, or "".
func httpURLProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "not a URL"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "the scheme must be http or https"
	}
	if u.Hostname() == "" {
		return "the URL has no host"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("port %q is not in 1..65535", p)
		}
	}
	return ""
}
