#include "duckblock/chain.h"

#include <nlohmann/json.hpp>
#include <random>

#include "duckblock/error.h"
#include "duckblock/key.h"

namespace duckblock {

namespace {

constexpr int kChainConvention = 2;

std::string marker_text(const ChainIdentity& id) {
  nlohmann::json j = {{"hadbp_chain", id.convention},
                      {"lineage", id.lineage},
                      {"base_checksum", checksum_hex(id.base_checksum)}};
  return j.dump() + "\n";
}

uint64_t be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

const ChainEntry* find_incremental(const ChainListing& chain, uint64_t seq) {
  // Incrementals are listed by ascending seq.
  auto it = std::lower_bound(chain.incrementals.begin(), chain.incrementals.end(), seq,
                             [](const ChainEntry& e, uint64_t s) { return e.seq < s; });
  return it != chain.incrementals.end() && it->seq == seq ? &*it : nullptr;
}

}  // namespace

std::string chain_marker_key(const std::string& prefix, const std::string& db) {
  validate_db_name(db);
  return prefix + db + "/chain.json";
}

ChainIdentity read_chain_identity(ObjectStore& store, const std::string& prefix, const std::string& db) {
  std::string key = chain_marker_key(prefix, db);
  constexpr size_t kMaxMarkerBytes = 64 << 10;  // it takes about 100
  auto got = get_record_if_exists(store, key, kMaxMarkerBytes);
  if (!got) return ChainIdentity{};  // written before chain.json
  const std::vector<uint8_t>& bytes = *got;
  try {
    auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
    ChainIdentity id;
    id.convention = j.at("hadbp_chain").get<int>();
    if (id.convention != kChainConvention) {
      throw Error(ErrorKind::kUnsupported, "object " + key + " declares chain convention " +
                                               std::to_string(id.convention) + ", which this build does not know");
    }
    id.lineage = j.at("lineage").get<std::string>();
    id.base_checksum = parse_checksum_hex(j.at("base_checksum").get<std::string>());
    if (id.lineage.size() != 32 || id.lineage.find_first_not_of("0123456789abcdef") != std::string::npos) {
      throw std::runtime_error("bad lineage");
    }
    return id;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kCorruption, "object " + key + " (the chain's identity) is damaged: " + e.what());
  }
}

void write_chain_identity(ObjectStore& store, const std::string& prefix, const std::string& db,
                          const ChainIdentity& id) {
  std::string text = marker_text(id);
  MemorySource src{std::string_view(text)};
  try {
    store.put_if_absent(chain_marker_key(prefix, db), src);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kAlreadyExists) throw;
    ChainIdentity theirs = read_chain_identity(store, prefix, db);
    if (theirs != id) {
      throw Error(ErrorKind::kFenced, "another leader has started a chain for '" + db + "' (lineage " +
                                          theirs.lineage + "); this one (lineage " + id.lineage +
                                          ") must not write it");
    }
  }
}

std::string new_lineage() {
  std::random_device rd;
  std::string out;
  static const char* hex = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) {
    unsigned v = rd() & 0xff;
    out += hex[v >> 4];
    out += hex[v & 15];
  }
  return out;
}

std::optional<uint64_t> stated_chain_checksum(ObjectStore& store, const ChainListing& chain,
                                              const ChainIdentity& id, uint64_t seq) {
  if (const ChainEntry* e = find_incremental(chain, seq); e && e->size >= kHeaderSize + kTrailerSize) {
    auto t = get_bytes(store, e->key, ByteRange{e->size - kTrailerSize, kTrailerSize});
    if (t.size() == kTrailerSize) return be64(t.data());
  }
  if (const ChainEntry* e = find_incremental(chain, seq + 1); e && e->size >= kHeaderSize) {
    auto h = get_bytes(store, e->key, ByteRange{0, kHeaderSize});
    if (h.size() == kHeaderSize) {
      try {
        return parse_header(std::span<const uint8_t, kHeaderSize>(h.data(), kHeaderSize)).prev_checksum;
      } catch (const Error&) {
        // A damaged header states nothing; applying that object fails later.
      }
    }
  }
  if (seq == 0) return id.base_checksum;
  return std::nullopt;
}

ChainPosition bind_snapshot(ObjectStore& store, const ChainListing& chain, const ChainIdentity& id,
                            const ChainEntry& entry, const SegmentSummary& s) {
  const uint64_t seq = s.header.seq;
  auto refuse = [&](const std::string& why) -> ChainPosition {
    throw Error(ErrorKind::kChainBroken, "snapshot " + entry.key + " does not belong to this chain: " + why);
  };
  if (seq == 0) {
    if (s.header.prev_checksum != 0) {
      return refuse("a seq-0 snapshot names prev_checksum 0, it names " + checksum_hex(s.header.prev_checksum) +
                    " (it is an incremental or another chain's snapshot)");
    }
    if (id.convention == 1) return {0, 0};
    if (s.checksum != id.base_checksum) {
      return refuse("its checksum " + checksum_hex(s.checksum) + " is not the chain's base checksum " +
                    checksum_hex(id.base_checksum) + " (from chain.json): it is another database's or another chain's snapshot");
    }
    return {0, s.checksum};
  }
  auto stated = stated_chain_checksum(store, chain, id, seq);
  if (!stated) {
    if (id.convention == 1) return {seq, s.header.prev_checksum};  // nothing to check against (older store)
    return refuse("neither incremental " + std::to_string(seq) + " nor " + std::to_string(seq + 1) +
                  " is in the store to state the chain checksum at seq " + std::to_string(seq));
  }
  if (*stated != s.header.prev_checksum) {
    return refuse("it names chain checksum " + checksum_hex(s.header.prev_checksum) + " at seq " +
                  std::to_string(seq) + " but the chain's is " + checksum_hex(*stated) +
                  " (it is another chain's snapshot, or an incremental copied under a snapshot key)");
  }
  return {seq, s.header.prev_checksum};
}

void throw_lineage_mismatch(const std::string& db, const std::string& store_lineage, const std::string& ours,
                            const std::string& what_to_do) {
  throw Error(ErrorKind::kChainBroken,
              "the store's '" + db + "' is another chain (lineage " +
                  (store_lineage.empty() ? std::string("none: written before chain.json") : store_lineage) +
                  ", recorded here: " + ours + "): the database was deleted and rebuilt, never ours to continue; " +
                  what_to_do);
}

}  // namespace duckblock
