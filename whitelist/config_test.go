package whitelist

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		yaml string
		want string
	}{
		{"refresh: 0s", `whitelist.refresh: must be between 100ms and 5m0s, got "0s"`},
		{"refresh: 1h", "whitelist.refresh: must be between"},
		{"role_recipients: [postmaster@, '@example.com']", "whitelist.role_recipients[1]:"},
		{"clients_files: ['']", "whitelist.clients_files[0]: empty file name"},
		{"senders_files: [a, '']", "whitelist.senders_files[1]: empty file name"},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		if err := yaml.Unmarshal([]byte(tt.yaml), &cfg); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

// An empty role_recipients list turns the postmaster@/abuse@ default off.
func TestRoleRecipientsCanBeTurnedOff(t *testing.T) {
	cfg := DefaultConfig()
	if err := yaml.Unmarshal([]byte("role_recipients: []\nrefresh: 2s\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Refresh != 2*time.Second {
		t.Fatalf("refresh = %s", cfg.Refresh)
	}
	w, err := New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m := w.Match(rq("198.18.0.1", "", "a@b.example", "postmaster@x.example"), t0); len(m.Entries) != 0 {
		t.Errorf("postmaster matched %s with role_recipients off", m)
	}
	w, err = New(context.Background(), DefaultConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m := w.Match(rq("198.18.0.1", "", "a@b.example", "postmaster@x.example"), t0); len(m.Entries) != 1 {
		t.Error("postmaster not matched by default")
	}
}
