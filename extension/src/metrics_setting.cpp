// The duckblock_metrics_port setting. See metrics_setting.h.
#include "metrics_setting.h"

#include <algorithm>

#include "duckblock/error.h"
#include "duckblock/metrics.h"
#include "state.h"

namespace duckblock::extension {

namespace {

void on_set(duckdb::ClientContext& context, duckdb::SetScope, duckdb::Value& value) {
  int64_t port = value.IsNull() ? 0 : value.GetValue<int64_t>();
  if (port < 0 || port > 65535) {
    throw duckdb::InvalidInputException("duckblock_metrics_port: %lld is not a TCP port (1..65535, or 0 for off)",
                                        static_cast<long long>(port));
  }
  auto state = State::find(*context.db);
  std::lock_guard l(state->metrics_mu);
  if (port == 0) {
    state->metrics.reset();
    return;
  }
  if (state->metrics && state->metrics->port() == port) return;
  // The new listener first: if its port is taken, the old one keeps serving.
  std::unique_ptr<MetricsServer> server;
  try {
    MetricsAddress address;
    address.port = static_cast<uint16_t>(port);
    State* raw = state.get();  // the State owns the listener and stops it first (State::shutdown)
    server = std::make_unique<MetricsServer>(address, [raw] { return render_instance_metrics(*raw); });
  } catch (const Error& e) {
    throw duckdb::IOException("duckblock_metrics_port: %s (%s)", e.what(), std::string(to_string(e.kind())));
  }
  state->metrics = std::move(server);
}

}  // namespace

void register_metrics_setting(duckdb::DBConfig& config) {
  config.AddExtensionOption("duckblock_metrics_port",
                            "Serve Prometheus metrics of every replicated and followed database at "
                            "http://127.0.0.1:PORT/metrics (0 = off)",
                            duckdb::LogicalType::UBIGINT, duckdb::Value::UBIGINT(0), on_set,
                            duckdb::SetScope::GLOBAL);
}

std::string render_instance_metrics(State& state) {
  std::vector<ReplicationStatus> leaders;
  for (auto& l : state.leaders()) {
    auto dbs = l->replicator->databases();
    ReplicationStatus rs;
    if (std::find(dbs.begin(), dbs.end(), l->db) != dbs.end()) {
      rs = l->replicator->status(l->db);
    } else {
      // Not replicating yet (the store was unreachable at ATTACH): shown
      // with its error, so that an alert on duckblock_error sees it.
      rs.db = l->db;
      rs.last_error = l->wait->error();
    }
    if (auto err = l->capture->stats().last_error) rs.last_error = err;
    leaders.push_back(std::move(rs));
  }
  std::vector<FollowerSample> followers;
  for (auto& f : state.followers()) {
    auto st = f->status();
    FollowerSample s;
    s.db = st.db;
    s.alias = st.alias;
    s.applied_seq = st.applied_seq;
    s.head_seq = st.head_seq;
    s.last_current_ms = st.last_current_ms;
    s.log_index = st.log_index;
    s.log_bytes = st.log_bytes;
    s.polls = st.polls;
    s.errors = st.errors;
    s.error = st.last_error.has_value();
    followers.push_back(std::move(s));
  }
  return render_metrics(leaders, followers, metrics_now_ms());
}

}  // namespace duckblock::extension
