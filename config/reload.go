package config

import "slices"

// reloadKeys is the one list of which top-level keys a running agent can
// apply and which need a restart. Runtime.Reloadable reads it, and a test
// holds README.md's "Reloading" section to it. A key is listed by its name
// in the files, except that the service blocks are "services".
var reloadKeys = []struct {
	key     string
	runtime bool // the agent applies a change without a restart
	same    func(a, b Runtime) bool
}{
	{"node_name", false, func(a, b Runtime) bool { return a.NodeName == b.NodeName }},
	{"data_dir", false, func(a, b Runtime) bool { return a.DataDir == b.DataDir }},
	{"socket", false, func(a, b Runtime) bool { return a.Socket == b.Socket }},
	{"bind_addr", false, func(a, b Runtime) bool { return a.BindAddr == b.BindAddr }},
	{"advertise_addr", false, func(a, b Runtime) bool { return a.AdvertiseAddr == b.AdvertiseAddr }},
	{"domain", false, func(a, b Runtime) bool { return a.Domain == b.Domain }},
	{"ports", false, func(a, b Runtime) bool { return a.Ports == b.Ports }},
	{"server", false, func(a, b Runtime) bool { return a.Server == b.Server }},
	{"bootstrap", false, func(a, b Runtime) bool { return a.Bootstrap == b.Bootstrap }},
	{"tags", true, func(a, b Runtime) bool { return slices.Equal(a.Tags, b.Tags) }},
	{"join", true, func(a, b Runtime) bool {
		return a.Join.Token == b.Join.Token && slices.Equal(a.Join.Addresses, b.Join.Addresses)
	}},
	{"log_level", true, func(a, b Runtime) bool { return a.LogLevel == b.LogLevel }},
	{"log_format", false, func(a, b Runtime) bool { return a.LogFormat == b.LogFormat }},
	{"services", true, func(a, b Runtime) bool { return slices.EqualFunc(a.Services, b.Services, Service.equal) }},
	{"dns", true, func(a, b Runtime) bool { return a.DNS.equal(b.DNS) }},
	{"metrics", false, func(a, b Runtime) bool { return a.Metrics == b.Metrics }},
}

// Reloadable compares r, the running configuration, with next, a newly
// loaded one, by top-level key. changed lists the keys that differ and that
// a running agent applies; needRestart lists the keys that differ and that
// take effect only after a restart. README.md's "Reloading" section names
// both kinds. Both lists are in the order of README.md's key table, and
// both are empty when nothing differs. A nil and an empty list are the same.
func (r Runtime) Reloadable(next Runtime) (changed []string, needRestart []string) {
	for _, k := range reloadKeys {
		switch {
		case k.same(r, next):
		case k.runtime:
			changed = append(changed, k.key)
		default:
			needRestart = append(needRestart, k.key)
		}
	}
	return changed, needRestart
}

func (s Service) equal(o Service) bool {
	return s.Name == o.Name && s.Port == o.Port &&
		slices.Equal(s.Tags, o.Tags) &&
		equalPtr(s.Check, o.Check) && equalPtr(s.Identity, o.Identity) &&
		slices.Equal(s.Upstreams, o.Upstreams)
}

func (d DNS) equal(o DNS) bool {
	return d.Enabled == o.Enabled && slices.Equal(d.Listen, o.Listen) && d.Domain == o.Domain &&
		slices.Equal(d.Upstreams, o.Upstreams) && slices.Equal(d.AllowFrom, o.AllowFrom) &&
		d.TTL == o.TTL && d.Resolved == o.Resolved
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
