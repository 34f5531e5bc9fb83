// SPDX-License-Identifier: MIT

package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParseVariant(t *testing.T) {
	tests := []struct {
		in            string
		key           string
		client, relay role
		bad           bool
	}{
		{"nobatch|ours|ours --no-batch", "nobatch", role{args: []string{}}, role{args: []string{"--no-batch"}}, false},
		{" slow | miredo | ours  --a  --b ", "slow", role{miredo: true}, role{args: []string{"--a", "--b"}}, false},
		{"x|ours", "", role{}, role{}, true},
		{"two words|ours|ours", "", role{}, role{}, true},
		{"|ours|ours", "", role{}, role{}, true},
		{"k|miredo -x|ours", "", role{}, role{}, true},
		{"k|theirs|ours", "", role{}, role{}, true},
		{"k|ours|", "", role{}, role{}, true},
	}
	for _, tt := range tests {
		p, err := parseVariant(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("parseVariant(%q): err %v, want error %v", tt.in, err, tt.bad)
			continue
		}
		if tt.bad {
			continue
		}
		if p.key != tt.key || p.client.miredo != tt.client.miredo || p.relay.miredo != tt.relay.miredo ||
			!slices.Equal(p.client.args, tt.client.args) || !slices.Equal(p.relay.args, tt.relay.args) || p.vxlan {
			t.Errorf("parseVariant(%q) = %+v, want key %q client %+v relay %+v", tt.in, p, tt.key, tt.client, tt.relay)
		}
	}
}

func TestSetPairings(t *testing.T) {
	var opt Options
	if err := opt.setPairings([]string{"--c"}, []string{"--r"}, []string{"nb|ours|ours --no-batch"}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range opt.Pairings {
		keys = append(keys, p.key)
	}
	if got := strings.Join(keys, ","); got != "miredo,ours,our-relay,our-client,vxlan,nb" {
		t.Errorf("keys %s", got)
	}
	ours := opt.Pairings[1]
	if ours.client.String() != "ours --c" || ours.relay.String() != "ours --r" {
		t.Errorf("our pairing: client %q relay %q", ours.client, ours.relay)
	}
	if got := opt.Pairings[5]; got.title != "variant nb" || got.legend() != "client ours, relay ours --no-batch" {
		t.Errorf("variant: title %q, legend %q", got.title, got.legend())
	}
	if r := opt.Pairings[2]; !r.client.miredo || r.relay.String() != "ours --r" {
		t.Errorf("our-relay pairing: %+v", r)
	}
	if err := opt.setPairings(nil, nil, []string{"ours|ours|ours"}); err == nil {
		t.Error("a variant reusing a standard key was accepted")
	}
}

func TestSelectPairings(t *testing.T) {
	all := standardPairings(nil, nil)
	tests := []struct {
		only string
		want string
		bad  bool
	}{
		{"", "miredo,ours,our-relay,our-client,vxlan", false},
		{"vxlan, ours", "ours,vxlan", false},
		{"theirs", "", true},
	}
	for _, tt := range tests {
		got, err := selectPairings(all, tt.only)
		if (err != nil) != tt.bad {
			t.Errorf("selectPairings(%q): err %v, want error %v", tt.only, err, tt.bad)
			continue
		}
		var keys []string
		for _, p := range got {
			keys = append(keys, p.key)
		}
		if strings.Join(keys, ",") != tt.want {
			t.Errorf("selectPairings(%q) = %v, want %s", tt.only, keys, tt.want)
		}
	}
}

func TestUses(t *testing.T) {
	all := standardPairings(nil, nil)
	byKey := func(keys ...string) []pairing {
		ps, err := selectPairings(all, strings.Join(keys, ","))
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	tests := []struct {
		ps           []pairing
		miredo, ours bool
	}{
		{byKey("miredo"), true, false},
		{byKey("ours"), false, true},
		{byKey("our-relay"), true, true},
		{byKey("vxlan"), false, false},
	}
	for _, tt := range tests {
		if usesMiredo(tt.ps) != tt.miredo || usesOurs(tt.ps) != tt.ours {
			t.Errorf("%s: uses Miredo %v ours %v, want %v %v", tt.ps[0].key, usesMiredo(tt.ps), usesOurs(tt.ps), tt.miredo, tt.ours)
		}
	}
}
