package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vxland/vxland/discovery/flannel"
	"github.com/vxland/vxland/internal/metrics"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/hostnet"
)

// Defaults of the flannel mode's flags.
const (
	defaultSubnetFile = flannel.DefaultSubnetFile
	flannelPrefix     = flannel.DefaultPrefix
)

// flannelDaemon runs vxland as a node of a flannel network (--mode=flannel):
// a routed TAP called flannel.<VNI> in place of flannel's kernel vxlan
// device, its subnet leased in etcd, the other nodes' subnets routed
// through the TAP. See docs/flannel.md. It tells systemd it is ready the
// first time the node is (flannel.Node.Ready); /readyz checks the TAP and
// the sockets as well, and says not ready again whenever one check fails.
func flannelDaemon(ctx context.Context, cfg *config, log *slog.Logger, sv *supervisor) error {
	u, publicIP, err := flannelUnderlay(cfg)
	if err != nil {
		return err
	}
	if err := cfg.Underlay.Check(publicIP); err != nil {
		return usagef("--underlay-cidr %s: this node's public IP %s is outside it", cfg.Underlay, publicIP)
	}
	// Health answers from the start: alive while waiting for etcd, ready
	// only once the node is. Every return stops the servers (cancel) and
	// waits for them.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const noConfig = "waiting for the flannel network config in etcd"
	st, err := startStatus(ctx, cfg, log, pending{checkTAP, "TAP not open yet: " + noConfig},
		pending{checkUnderlay, "UDP sockets not bound yet: " + noConfig}, pending{checkFlannel, "flannel network config not read from etcd yet"})
	defer func() {
		cancel()
		st.wait()
	}()
	if err != nil {
		return err
	}

	cli, err := newEtcdClient(ctx, cfg, cfg.EtcdEndpoints)
	if err != nil {
		return err
	}
	defer cli.Close()
	keys := flannel.NewKeys(cfg.EtcdPrefix)
	network, err := flannel.WaitNetworkConfig(ctx, cli, keys, log)
	if err != nil {
		return nil // stopped while waiting
	}
	be := network.Backend
	if be.GBP {
		return fmt.Errorf("%s: Backend.GBP is set; vxland does not speak VXLAN-GBP", keys.Config())
	}
	if be.DirectRouting {
		log.Warn("Backend.DirectRouting is not supported: every node is reached through the tunnel", "key", keys.Config())
	}
	mtu, source := cfg.MTU, "--mtu"
	if mtu == 0 && be.MTU != 0 {
		mtu, source = be.MTU, keys.Config()+" Backend.MTU"
	}
	mtu, err = pickMTU(u, mtu, source, cfg.ForceMTU)
	if err != nil {
		return err
	}
	tapName := cfg.TAP
	if tapName == "" {
		tapName = fmt.Sprintf("flannel.%d", be.VNI)
	}
	mac := flannel.VtepMAC(publicIP, be.VNI)

	// The same data plane as in L2 mode, fast path (--offload) included.
	devCfg := *cfg
	devCfg.TAP = tapName
	conns, err := openUnderlay(&devCfg, netip.AddrPortFrom(u.Addr, be.Port), u.Iface, log)
	if err != nil {
		return err
	}
	st.done(checkUnderlay)
	tapDev, err := openTAP(&devCfg, devCfg.TAP, mtu, log)
	if err != nil {
		closeConns(conns)
		return err
	}
	table := fdb.New(be.Port, cfg.FDBAgeing)
	ovCfg := overlay.Config{VNI: be.VNI, LocalMAC: mac, MTU: mtu, Logger: log, BatchWhenIdle: cfg.BatchWhenIdle, Poll: cfg.Poll, NoLearning: !cfg.Learning}
	cfg.Limits.apply(&ovCfg, table)
	ov, err := overlay.New(ovCfg, queues(tapDev, conns), table)
	if err == nil {
		err = hostnet.SetupRoutedTAP(tapDev.Name(), mac, mtu)
	}
	var dev *flannel.Device
	if err == nil {
		dev, err = flannel.NewDevice(tapDev.Name(), be.VNI, table)
	}
	if err != nil {
		tapDev.Close()
		closeConns(conns)
		return err
	}
	st.tapUp(hostTAP{tapDev.Name(), ""})
	healer := hostnet.NewRoutedHealer(tapDev.Name(), mac, mtu, log)
	st.dataPlaneUp(dataPlane{ov: ov, vni: be.VNI, table: table, local: netip.AddrPortFrom(u.Addr, be.Port),
		settings: cfg.Settings, heals: healer.Heals, adopted: tapDev.Adopted()})
	node := flannel.NewNode(flannel.NodeConfig{
		Client: cli, Prefix: cfg.EtcdPrefix, Network: network,
		PublicIP: publicIP, VtepMAC: mac, MTU: mtu, SubnetFile: cfg.SubnetFile,
		Dataplane: dev, Underlay: cfg.Underlay, Logger: log,
	})
	st.ready.Set(checkFlannel, func() error {
		if ok, why := node.Ready(); !ok {
			return errors.New(why)
		}
		return nil
	})
	st.metrics.Add(&metrics.Flannel{Node: node})
	// A repaired flannel.<VNI> (recreated after a deletion) has lost its
	// address, routes and neighbours: the node puts them back.
	healer.OnRepair = node.Reconfigure
	st.wg.Go(func() { healer.Run(ctx) })

	nodeCtx, stopNode := context.WithCancel(ctx)
	nodeDone := make(chan struct{})
	go func() {
		defer close(nodeDone)
		node.Run(nodeCtx)
	}()
	go sv.readyWhen(nodeCtx, nodeReady(nodeCtx, node))
	log.Info("vxland up in flannel mode", "version", versionString(), "network", network.Network, "vni", be.VNI, "port", be.Port,
		"local", u.Addr, "public_ip", publicIP, "iface", u.Iface, "tap", tapDev.Name(), "vtep_mac", mac, "mtu", mtu,
		"etcd_prefix", cfg.EtcdPrefix, "subnet_file", cfg.SubnetFile, "control", cfg.ControlSocket)
	err = ov.Run(ctx)
	stopNode()
	<-nodeDone
	cancel()
	return errors.Join(err, st.wait())
}

// nodeReady is closed once node is first ready.
func nodeReady(ctx context.Context, node *flannel.Node) <-chan struct{} {
	ready := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for ok, _ := node.Ready(); !ok; ok, _ = node.Ready() {
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		close(ready)
	}()
	return ready
}

// flannelUnderlay finds the VTEP address and the PublicIP: --public-ip
// is the VTEP address when it is one of this host's; otherwise (behind a
// NAT) the VTEP address is found as in L2 mode and the other nodes are
// told PublicIP.
func flannelUnderlay(cfg *config) (hostnet.Underlay, netip.Addr, error) {
	if !cfg.LocalIP.IsValid() && cfg.PublicIP.IsValid() {
		if u, err := hostnet.ResolveUnderlay(cfg.Iface, cfg.PublicIP); err == nil {
			return u, cfg.PublicIP, nil
		}
	}
	u, err := hostnet.ResolveUnderlay(cfg.Iface, cfg.LocalIP)
	if err != nil {
		switch {
		case cfg.LocalIP.IsValid():
			return u, netip.Addr{}, usagef("--local-ip %s: %v", cfg.LocalIP, err)
		case cfg.Iface != "":
			return u, netip.Addr{}, usagef("--iface %s: %v", cfg.Iface, err)
		}
		return u, netip.Addr{}, usagef("%v", err)
	}
	if !u.Addr.Is4() {
		return u, netip.Addr{}, usagef("the VTEP address %s is not IPv4: flannel mode needs an IPv4 underlay (--iface, --local-ip)", u.Addr)
	}
	pub := cfg.PublicIP
	if !pub.IsValid() {
		pub = u.Addr
	}
	return u, pub, nil
}
