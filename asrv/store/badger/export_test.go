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

// UncachedAccessForTest reads an access token past the read cache, as a
// miss does.
func (s *Store) UncachedAccessForTest(sig string) (clientID string, clientScopes, granted []string, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		rec, _, err := s.loadRecord(txn, badgerKindAccess, sig)
		if err != nil {
			return err
		}
		client, err := badgerLoadClient(txn, rec.ClientID)
		if err != nil {
			return err
		}
		if err := badgerActorsRegistered(txn, rec); err != nil {
			return err
		}
		clientID, clientScopes, granted = client.ID, client.Scopes, rec.GrantedScope
		return nil
	})
	return clientID, clientScopes, granted, err
}

// CachedForTest tells whether the read cache holds an access token.
func (s *Store) CachedForTest(sig string) bool {
	_, _, ok := s.cache.get(sig)
	return ok
}
