// Package temporal connects orderflow to a Temporal service: client options
// from the SDK's standard TEMPORAL_* environment (address, namespace, TLS,
// API key, profiles in the client config file), logging through slog. The
// embedded development server lives in the devserver subpackage so that
// nothing else links the Temporal server.
package temporal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	sdklog "go.temporal.io/sdk/log"
)

// DefaultTaskQueue is the task queue the order worker polls.
const DefaultTaskQueue = "orderflow-orders"

// LoadClientOptions reads the client options the way the Temporal SDKs and
// CLI do (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
// TEMPORAL_TLS_*, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE), through env.
// A TEMPORAL_TLS that is no boolean is refused: the SDK would ignore it
// and connect as if it were unset.
func LoadClientOptions(env envconfig.EnvLookup) (client.Options, error) {
	if v, ok := env.LookupEnv("TEMPORAL_TLS"); ok && v != "" {
		switch strings.ToLower(v) {
		case "true", "false", "1", "0":
		default:
			return client.Options{}, fmt.Errorf("TEMPORAL_TLS: %q is not true or false (or 1 or 0)", v)
		}
	}
	opts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{EnvLookup: env})
	if err != nil {
		return client.Options{}, fmt.Errorf("temporal client options: %w", err)
	}
	return opts, nil
}

// Dial connects with opts, logging through logger, and checks the server
// answers before it returns.
func Dial(ctx context.Context, opts client.Options, logger *slog.Logger) (client.Client, error) {
	if opts.Namespace == "" {
		opts.Namespace = client.DefaultNamespace
	}
	opts.Logger = sdklog.NewStructuredLogger(logger.With("component", "temporal-sdk"))
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to temporal at %s: %w", opts.HostPort, err)
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.CheckHealth(hctx, &client.CheckHealthRequest{}); err != nil {
		c.Close()
		return nil, fmt.Errorf("temporal at %s does not answer: %w", opts.HostPort, err)
	}
	// A namespace that does not exist fails every call later (the API's
	// with a 500, the worker's at its start): say so now. A server whose
	// store is a moment away (its database restarting: the frontend
	// answers health checks, the look-up says Unavailable) is asked again
	// until the check's deadline. Other errors of the look-up (a key not
	// allowed to describe namespaces, a store down for longer) are left to
	// the calls themselves.
	nctx, ncancel := context.WithTimeout(ctx, namespaceCheckTimeout)
	defer ncancel()
	err = describeNamespace(nctx, c, opts.Namespace)
	if nf := (*serviceerror.NamespaceNotFound)(nil); errors.As(err, &nf) {
		c.Close()
		return nil, fmt.Errorf("temporal at %s has no namespace %q: create it (temporal operator namespace create --namespace %s) or set TEMPORAL_NAMESPACE", opts.HostPort, opts.Namespace, opts.Namespace)
	}
	if ctx.Err() != nil {
		c.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		logger.Warn("could not check the temporal namespace; going on", "addr", opts.HostPort, "namespace", opts.Namespace, "err", err)
	}
	return c, nil
}

// namespaceCheckTimeout bounds Dial's namespace look-up, retries included:
// long enough for a store that restarts (a database's restart, and the
// server's reconnection, which it tries at most once a second).
const namespaceCheckTimeout = 30 * time.Second

// describeNamespace looks namespace up, again while the server answers
// Unavailable, until ctx ends.
func describeNamespace(ctx context.Context, c client.Client, namespace string) error {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		_, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
		if u := (*serviceerror.Unavailable)(nil); !errors.As(err, &u) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}
