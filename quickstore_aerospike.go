package main

import (
	"context"
	"errors"
)

// Placeholder until the Aerospike backend lands (helper-1 replaces this file).
func openAerospikeQuickStore(ctx context.Context, spec string) (QuickStore, error) {
	return nil, errors.New("aerospike quick store not built yet")
}
