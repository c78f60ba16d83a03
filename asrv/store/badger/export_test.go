package badger

import "github.com/dgraph-io/badger/v4"

// RawEntriesForTest calls fn with every live key and value in the database.
func (s *Store) RawEntriesForTest(fn func(key, val []byte)) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			fn(it.Item().KeyCopy(nil), v)
		}
		return nil
	})
}

// SetRawForTest overwrites a raw key, as tampering with the files would.
func (s *Store) SetRawForTest(key, val []byte) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) })
}
