package main

import (
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/ingestd/ingestd/restapi"
)

// Limits bound what clients may hold of the server: connections, time and
// add slots (docs/reliability.md lists each with the test that proves it).
// Zero values take restapi's defaults; durations are Go durations ("30s").
type Limits struct {
	MaxConnections      int    `json:"max_connections"`
	MaxConnectionsPerIP int    `json:"max_connections_per_ip"`
	MaxConcurrentAdds   int    `json:"max_concurrent_adds"`
	MinUploadRate       int    `json:"min_upload_rate"`
	HeaderTimeout       string `json:"header_timeout"`
	IdleTimeout         string `json:"idle_timeout"`
	WriteTimeout        string `json:"write_timeout"`
	StallTimeout        string `json:"stall_timeout"`
	ShutdownTimeout     string `json:"shutdown_timeout"`
}

// limitOption is one limit's flag, environment variable and field.
type limitOption struct {
	flag, env, usage string
	num              *int    // an integer limit, or
	dur              *string // a duration
	value            *string // the flag's value; "" when not given
}

func (l *Limits) options() []limitOption {
	return []limitOption{
		{flag: "max-connections", env: "INGESTD_MAX_CONNECTIONS", num: &l.MaxConnections, usage: "connections open at once; one more is answered 503 (default 10000, or half the file descriptor limit)"},
		{flag: "max-connections-per-ip", env: "INGESTD_MAX_CONNECTIONS_PER_IP", num: &l.MaxConnectionsPerIP, usage: "connections open at once from one address; one more is answered 429 (default 1024; -1: none)"},
		{flag: "max-concurrent-adds", env: "INGESTD_MAX_CONCURRENT_ADDS", num: &l.MaxConcurrentAdds, usage: "adds that run at once; others wait up to 10s, then get 503 (default 16)"},
		{flag: "min-upload-rate", env: "INGESTD_MIN_UPLOAD_RATE", num: &l.MinUploadRate, usage: "bytes/s an upload must arrive at, over each stall timeout spent waiting for it (default 1024; -1: none)"},
		{flag: "header-timeout", env: "INGESTD_HEADER_TIMEOUT", dur: &l.HeaderTimeout, usage: "time to send a request's line and headers, and bodies other than uploads (default 30s)"},
		{flag: "idle-timeout", env: "INGESTD_IDLE_TIMEOUT", dur: &l.IdleTimeout, usage: "time a kept-alive connection may wait for its next request (default 2m)"},
		{flag: "write-timeout", env: "INGESTD_WRITE_TIMEOUT", dur: &l.WriteTimeout, usage: "time a client may take to accept each piece of a response (default 60s)"},
		{flag: "stall-timeout", env: "INGESTD_STALL_TIMEOUT", dur: &l.StallTimeout, usage: "time an upload may send nothing (default 60s)"},
		{flag: "shutdown-timeout", env: "INGESTD_SHUTDOWN_TIMEOUT", dur: &l.ShutdownTimeout, usage: "time running adds get to finish on SIGTERM before they are cancelled (default 30s)"},
	}
}

// limitFlags holds the limit flags of one flag set.
type limitFlags []limitOption

func addLimitFlags(fs *flag.FlagSet) limitFlags {
	var opts limitFlags
	for _, o := range (&Limits{}).options() {
		o.value = fs.String(o.flag, "", o.usage+" (env "+o.env+")")
		opts = append(opts, o)
	}
	return opts
}

// apply lays the environment, then the flags, over the file's limits.
func (f limitFlags) apply(l *Limits, getenv func(string) string) error {
	for i, o := range l.options() {
		for _, v := range []struct{ from, val string }{{o.env, getenv(o.env)}, {"--" + o.flag, *f[i].value}} {
			if v.val == "" {
				continue
			}
			if o.num != nil {
				n, err := strconv.Atoi(v.val)
				if err != nil {
					return fmt.Errorf("cannot parse %s=%q: want an integer", v.from, v.val)
				}
				*o.num = n
			} else {
				*o.dur = v.val
			}
		}
	}
	return nil
}

func (l *Limits) validate() error {
	for _, o := range l.options() {
		if o.dur != nil && *o.dur != "" {
			if d, err := time.ParseDuration(*o.dur); err != nil || d <= 0 {
				return fmt.Errorf("cannot use %s %q: want a positive duration such as 30s", o.flag, *o.dur)
			}
		}
	}
	if l.MaxConnections < 0 || l.MaxConcurrentAdds < 0 {
		return fmt.Errorf("cannot use max-connections %d or max-concurrent-adds %d: want a positive number", l.MaxConnections, l.MaxConcurrentAdds)
	}
	return nil
}

// toServer copies the limits into the server's config; validate has
// checked every duration.
func (l *Limits) toServer(c *restapi.Config) {
	dur := func(s string) time.Duration {
		d, _ := time.ParseDuration(s)
		return d
	}
	c.MaxConnections = l.MaxConnections
	c.MaxConnectionsPerIP = l.MaxConnectionsPerIP
	c.MaxConcurrentAdds = l.MaxConcurrentAdds
	c.MinUploadRate = l.MinUploadRate
	c.HeaderTimeout = dur(l.HeaderTimeout)
	c.IdleTimeout = dur(l.IdleTimeout)
	c.WriteStallTimeout = dur(l.WriteTimeout)
	c.BodyStallTimeout = dur(l.StallTimeout)
	c.ShutdownTimeout = dur(l.ShutdownTimeout)
}
