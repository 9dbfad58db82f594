package netlab

import (
	"fmt"
	"strings"
)

// SetSysctl sets kernel parameter key ("net.ipv4.ip_forward") to value in
// n, by running "sysctl -w key=value" there. Only network parameters
// (net.*) are accepted: they belong to the namespace, while others would
// change the whole machine.
func (n *NS) SetSysctl(key, value string) error {
	if err := checkSysctlKey(key); err != nil {
		return err
	}
	if value == "" || strings.ContainsAny(value, "\n=") {
		return fmt.Errorf("netlab: sysctl %s in %s: invalid value %q", key, n.Name, value)
	}
	if _, err := n.Run("sysctl", "-q", "-w", key+"="+value); err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	return nil
}

// Sysctl returns the value of network parameter key as n sees it.
func (n *NS) Sysctl(key string) (string, error) {
	if err := checkSysctlKey(key); err != nil {
		return "", err
	}
	out, err := n.Run("sysctl", "-n", key)
	if err != nil {
		return "", fmt.Errorf("netlab: %w", err)
	}
	return strings.TrimSpace(out), nil
}

func checkSysctlKey(key string) error {
	if !strings.HasPrefix(key, "net.") || !validName(key) {
		return fmt.Errorf("netlab: sysctl %q: only network parameters (net.*) belong to a namespace", key)
	}
	return nil
}
