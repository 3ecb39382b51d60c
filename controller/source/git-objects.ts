// The size of a git blob from its object header, without reading the blob: isomorphic-git's
// readBlob inflates a whole object into memory, and a blob of a gigabyte of zeros is a megabyte in
// the repository. A loose object's size is in the first bytes of its zlib stream
// (`blob <size>\0`); a packed one's is in its pack entry's header, or, for a delta, at the start of
// the delta's own zlib stream. Only pack index version 2 (git's default since 1.5.2) is read.
// Anything else — an alternate object store, a layout this does not know, a file that moved
// during a gc — gives undefined, and the caller reads the blob and checks its size after.
import { type FileHandle, open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { constants, inflateSync } from "node:zlib";

/** How many compressed bytes are tried in turn to inflate the first bytes of an object. */
const PREFIX_STEPS = [64, 512, 4096];

const PACK_INDEX_MAGIC = 0xff744f63;
const FANOUT_BYTES = 256 * 4;
const INDEX_HEADER_BYTES = 8;
const OID_BYTES = 20;
/** A pack entry's header: a size of up to 64 bits in 7-bit groups, then a delta's base. */
const ENTRY_HEADER_BYTES = 10 + OID_BYTES;

const TYPE_BLOB = 3;
const TYPE_OFS_DELTA = 6;
const TYPE_REF_DELTA = 7;

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, position);
  return buffer.subarray(0, bytesRead);
}

/**
 * The first inflated bytes of a zlib stream that starts at `position`, once `enough` says they
 * suffice; a truncated input is inflated as far as it goes (Z_SYNC_FLUSH), so only a prefix of
 * the stream is ever read.
 */
async function inflatedPrefix(
  handle: FileHandle,
  position: number,
  enough: (inflated: Buffer) => boolean,
): Promise<Buffer | undefined> {
  for (const length of PREFIX_STEPS) {
    const compressed = await readAt(handle, position, length);
    const inflated = inflateSync(compressed, { finishFlush: constants.Z_SYNC_FLUSH });
    if (enough(inflated)) return inflated;
    if (compressed.length < length) return undefined; // the whole stream, and still not enough
  }
  return undefined;
}

/** A git varint: 7 bits a byte, least significant first, the top bit set on all but the last. */
function readVarint(bytes: Buffer, start: number): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let index = start; index < bytes.length; index++) {
    const byte = bytes[index] as number;
    value += (byte & 0x7f) * scale; // arithmetic, not bit shifts: sizes may pass 2^31
    scale *= 128;
    if ((byte & 0x80) === 0) return { value, next: index + 1 };
  }
  return undefined;
}

async function looseBlobSize(gitdir: string, oid: string): Promise<number | undefined> {
  const path = join(gitdir, "objects", oid.slice(0, 2), oid.slice(2));
  const handle = await open(path, "r").catch(() => undefined);
  if (handle === undefined) return undefined;
  try {
    const header = await inflatedPrefix(handle, 0, (inflated) => inflated.includes(0));
    const match = header && /^blob (\d+)\0/.exec(header.toString("latin1", 0, 32));
    return match ? Number(match[1]) : undefined;
  } finally {
    await handle.close();
  }
}

/** Where `oid` is in the pack that `indexPath` indexes, by binary search over its sorted ids. */
async function packOffset(indexPath: string, oid: string): Promise<number | undefined> {
  const handle = await open(indexPath, "r");
  try {
    const header = await readAt(handle, 0, INDEX_HEADER_BYTES + FANOUT_BYTES);
    if (header.length < INDEX_HEADER_BYTES + FANOUT_BYTES) return undefined;
    if (header.readUInt32BE(0) !== PACK_INDEX_MAGIC || header.readUInt32BE(4) !== 2) {
      return undefined;
    }
    const target = Buffer.from(oid, "hex");
    const first = target[0] as number;
    // fanout[b] counts the ids whose first byte is at most b.
    const fanout = (byte: number) => header.readUInt32BE(INDEX_HEADER_BYTES + byte * 4);
    const count = fanout(255);
    let low = first === 0 ? 0 : fanout(first - 1);
    let high = fanout(first);
    const idsStart = INDEX_HEADER_BYTES + FANOUT_BYTES;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const id = await readAt(handle, idsStart + middle * OID_BYTES, OID_BYTES);
      const order = id.compare(target);
      if (order === 0) {
        // After the ids come a CRC per object, then 4-byte offsets; the top bit of one points
        // into the table of 8-byte offsets for packs over 2 GiB.
        const offsetsStart = idsStart + count * (OID_BYTES + 4);
        const small = (await readAt(handle, offsetsStart + middle * 4, 4)).readUInt32BE(0);
        if ((small & 0x80000000) === 0) return small;
        const largeStart = offsetsStart + count * 4 + (small & 0x7fffffff) * 8;
        return Number((await readAt(handle, largeStart, 8)).readBigUInt64BE(0));
      }
      if (order < 0) low = middle + 1;
      else high = middle;
    }
    return undefined;
  } finally {
    await handle.close();
  }
}

/** The size of the blob at `offset` of a pack: its header's, or the result size of a delta. */
async function packedBlobSize(packPath: string, offset: number): Promise<number | undefined> {
  const handle = await open(packPath, "r");
  try {
    const header = await readAt(handle, offset, ENTRY_HEADER_BYTES);
    const first = header[0];
    if (first === undefined) return undefined;
    const type = (first >> 4) & 0x7;
    // The size's first 4 bits are in the type byte, the rest a varint after it.
    let size = first & 0x0f;
    let next = 1;
    if (first & 0x80) {
      const rest = readVarint(header, 1);
      if (rest === undefined) return undefined;
      size += rest.value * 16;
      next = rest.next;
    }
    if (type === TYPE_BLOB) return size;
    if (type === TYPE_REF_DELTA) next += OID_BYTES;
    else if (type === TYPE_OFS_DELTA) {
      // The base's distance: a varint of another kind, whose length is all that matters here.
      while (next < header.length && ((header[next] as number) & 0x80) !== 0) next++;
      next++;
    } else return undefined;
    // A delta starts with the base's size and then the result's, both varints.
    const sizes = (inflated: Buffer) => {
      const base = readVarint(inflated, 0);
      return base === undefined ? undefined : readVarint(inflated, base.next);
    };
    const delta = await inflatedPrefix(handle, offset + next, (inflated) => !!sizes(inflated));
    return delta && sizes(delta)?.value;
  } finally {
    await handle.close();
  }
}

/** The size in bytes of blob `oid` in the repository at `gitdir`, or undefined if unknown. */
export async function blobSize(gitdir: string, oid: string): Promise<number | undefined> {
  if (!/^[0-9a-f]{40}$/.test(oid)) return undefined;
  try {
    const loose = await looseBlobSize(gitdir, oid);
    if (loose !== undefined) return loose;
    const packDir = join(gitdir, "objects", "pack");
    const indexes = (await readdir(packDir)).filter((name) => name.endsWith(".idx"));
    for (const index of indexes) {
      const offset = await packOffset(join(packDir, index), oid);
      if (offset !== undefined) {
        return await packedBlobSize(join(packDir, index.replace(/\.idx$/, ".pack")), offset);
      }
    }
    return undefined;
  } catch {
    // A pack replaced by a gc, a corrupt stream: the blob is read and measured instead.
    return undefined;
  }
}
