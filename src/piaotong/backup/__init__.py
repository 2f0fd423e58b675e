"""Backup (备份) and restore (恢复) of a node: one encrypted, checksummed archive file.

Terms:
  archive (备份文件)     the `.ptbk` file `piaotong backup` writes. Beside it, `<archive>.sha256`
                         holds the archive's SHA-256 in `sha256sum` format.
  snapshot (快照)        a transactionally consistent copy of the database, taken while the node
                         runs: SQLite's online backup API, or `pg_dump` of one exported snapshot.
  manifest (清单)        `manifest.json`, the archive's first member: what it holds, and the facts
                         (row counts, chain heads, migrations) a restore is checked against.
  member (成员)          one file inside the archive: the manifest, the database, a signing key,
                         an uploaded file under MEDIA_ROOT (`media/<relative path>`).
  backup key (备份密钥)  PIAOTONG_BACKUP_KEY, base64 of 32 random bytes, kept apart from backups.
  key id                 16 hex digits derived from a backup key by HKDF: it names the key an
                         archive needs without revealing the key.

Modules, one concept each:
  archive    the `.ptbk` format: header, chunked encryption, checksum file
  keys       backup keys and key ids
  snapshot   taking a backup: database snapshot, signing keys, media and manifest, as an archive
  restore    verifying an archive before touching anything, restoring, comparing afterwards
  manifest   what the manifest holds, written and read back
  facts      facts about a database: row counts, chain heads, migrations, an empty node
  database   the configured database outside Django: its SQLite file, PostgreSQL's client tools
  files      private files and durable renames
  reporting  BackupError, progress lines, sizes
"""

from piaotong.backup.archive import checksum_path
from piaotong.backup.facts import DatabaseFacts
from piaotong.backup.keys import KEY_ENV, generate_key, key_from_env, key_id, parse_key
from piaotong.backup.reporting import BackupError, Progress, human_size
from piaotong.backup.restore import RestoreReport, restore_backup
from piaotong.backup.snapshot import BackupResult, create_backup

__all__ = [
    "KEY_ENV",
    "BackupError",
    "BackupResult",
    "DatabaseFacts",
    "Progress",
    "RestoreReport",
    "checksum_path",
    "create_backup",
    "generate_key",
    "human_size",
    "key_from_env",
    "key_id",
    "parse_key",
    "restore_backup",
]
