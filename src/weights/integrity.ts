// Checksums for cached weights. IndexedDB and disks do damage data now and then (a browser killed mid-write, a
// failing sector, a user poking at DevTools), and a flipped byte in a weight does not crash anything: it makes the
// video quietly wrong. So every stored chunk carries a CRC-32 and every read recomputes it. CRC-32 (the zlib/PNG
// polynomial) because it catches every burst error up to 32 bits, has standard test vectors, and a
// slicing-by-8 table version runs at roughly a gigabyte per second in JavaScript.

// Eight 256-entry tables: table k maps a byte to its CRC contribution k bytes further on (slicing-by-8).
const TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) t[k][n] = (t[k - 1][n] >>> 8) ^ t[0][t[k - 1][n] & 0xff];
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as zlib's `crc32`) of `bytes`, continuing from `previous` when given. */
export function crc32(bytes: Uint8Array, previous = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  let crc = ~previous >>> 0;
  let i = 0;
  const n = bytes.length;
  for (; i + 8 <= n; i += 8) {
    const a = (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24)) ^ crc;
    crc = t7[a & 0xff] ^ t6[(a >>> 8) & 0xff] ^ t5[(a >>> 16) & 0xff] ^ t4[a >>> 24]
      ^ t3[bytes[i + 4]] ^ t2[bytes[i + 5]] ^ t1[bytes[i + 6]] ^ t0[bytes[i + 7]];
  }
  for (; i < n; i++) crc = t0[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return ~crc >>> 0;
}
