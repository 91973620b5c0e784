package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/clusterapi"
	"github.com/ingestd/ingestd/metrics"
	"github.com/ingestd/ingestd/restapi"
)

// kuboList is the repeatable --cluster-kubo flag: PEERID=URL.
type kuboList map[string]string

func (l *kuboList) String() string { return fmt.Sprint(map[string]string(*l)) }

func (l *kuboList) Set(v string) error {
	id, u, ok := strings.Cut(v, "=")
	pu, err := url.Parse(u)
	if !ok || id == "" || err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return fmt.Errorf("cannot use cluster kubo %q: want PEERID=http://HOST:PORT", v)
	}
	if *l == nil {
		*l = kuboList{}
	}
	(*l)[id] = u
	return nil
}

// validateCluster checks the cluster settings that cannot go with others.
func (c *Config) validateCluster() error {
	if c.Cluster == "" {
		if c.ClusterBasicAuth != "" || c.ClusterToken != "" || len(c.ClusterKubo) > 0 {
			return fmt.Errorf("cannot use cluster credentials or kubo addresses without --cluster")
		}
		return nil
	}
	if len(c.Peers) > 0 {
		return fmt.Errorf("cannot use --peer with --cluster: the cluster's peers are the peers")
	}
	if c.ClusterBasicAuth != "" {
		if u, p, ok := strings.Cut(c.ClusterBasicAuth, ":"); !ok || u == "" || p == "" {
			return fmt.Errorf("cannot use --cluster-basic-auth: want USER:PASSWORD with neither empty")
		}
	}
	_, err := clusterapi.New(clusterapi.Config{URL: c.Cluster})
	return err
}

// clusterSetup makes the cluster client and the Fanout whose peers follow
// the cluster's.
func clusterSetup(c *Config, m *metrics.Metrics) (*restapi.ClusterConfig, *blockfanout.Fanout, error) {
	user, pass, _ := strings.Cut(c.ClusterBasicAuth, ":")
	cl, err := clusterapi.New(clusterapi.Config{URL: c.Cluster, Username: user, Password: pass, Token: c.ClusterToken})
	if err != nil {
		return nil, nil, err
	}
	f, err := blockfanout.New(blockfanout.Config{Dynamic: true, Metrics: m})
	if err != nil {
		return nil, nil, err
	}
	return &restapi.ClusterConfig{Client: cl, Kubo: c.ClusterKubo}, f, nil
}
