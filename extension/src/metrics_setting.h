// duckblock_metrics_port: serves the metrics of every leader and follower of
// this DuckDB instance in the Prometheus text format at
// http://127.0.0.1:PORT/metrics (duckblock/metrics.h). 0 (the default)
// serves nothing. A port in use fails the SET with an error naming it.
#pragma once

#include <string>

#include "duckdb.hpp"

namespace duckblock::extension {

class State;

void register_metrics_setting(duckdb::DBConfig& config);

// The exposition text of `state`'s leaders and followers.
std::string render_instance_metrics(State& state);

}  // namespace duckblock::extension
