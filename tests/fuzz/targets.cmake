# The fuzz targets: name, sources and libraries. Included by tests/fuzz (the
# libFuzzer build) and by tests/reliability (the corpus replay that every
# normal and ASan build runs through ctest).
set(AGENTD_FUZZ_TARGETS envelope_fuzz json_fuzz plan_record_fuzz net_request_fuzz ws_client_frame_fuzz
    outbox_format_fuzz)
set(AGENTD_FUZZ_LIBS_envelope_fuzz agentd_core)
set(AGENTD_FUZZ_LIBS_json_fuzz agentd_core)
set(AGENTD_FUZZ_LIBS_plan_record_fuzz agentd_core)
set(AGENTD_FUZZ_LIBS_net_request_fuzz agentd_net)
set(AGENTD_FUZZ_LIBS_ws_client_frame_fuzz agentd_net)
set(AGENTD_FUZZ_LIBS_outbox_format_fuzz agentd_outbox)
set(AGENTD_FUZZ_DIR ${PROJECT_SOURCE_DIR}/tests/fuzz)
