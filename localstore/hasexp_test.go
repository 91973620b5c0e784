package localstore

import (
	"bytes"
	"context"
	"testing"
)

func BenchmarkHasFlushed(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	data := benchData(b)
	for i := range 100 {
		if err := s.Put(ctx, benchCid(b, uint64(i)), data); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.Run("ds.Has", func(b *testing.B) {
		for i := range b.N {
			ok, err := s.ds.Has(ctx, blockKey(benchCid(b, uint64(i%100))))
			if err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("SeekPrefixGE", func(b *testing.B) {
		for i := range b.N {
			key := blockKey(benchCid(b, uint64(i%100))).Bytes()
			it, err := s.db.NewIter(nil)
			if err != nil {
				b.Fatal(err)
			}
			ok := it.SeekPrefixGE(key) && bytes.Equal(it.Key(), key)
			if err := it.Close(); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("SeekPrefixGE-miss", func(b *testing.B) {
		for i := range b.N {
			key := blockKey(benchCid(b, uint64(1000+i))).Bytes()
			it, err := s.db.NewIter(nil)
			if err != nil {
				b.Fatal(err)
			}
			ok := it.SeekPrefixGE(key) && bytes.Equal(it.Key(), key)
			if err := it.Close(); err != nil || ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("ds.Has-miss", func(b *testing.B) {
		for i := range b.N {
			ok, err := s.ds.Has(ctx, blockKey(benchCid(b, uint64(1000+i))))
			if err != nil || ok {
				b.Fatal(ok, err)
			}
		}
	})
}
