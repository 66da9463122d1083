# tests/tests.cmake: extra ctest entries, included (OPTIONAL) at the end of CMakeLists.txt.
#
# check_hf_cpu_<fixture> / check_hf_vulkan_<fixture>: `pivot check-hf` of the Hugging Face golden fixtures in
# ../shared/fixtures/hf against the CPU and the Vulkan backend (the tokenizer has no backend: CPU only).
# Run the Vulkan ones with PIVOT_VK_VALIDATION=1 to have the Khronos validation layer check them too
# (ctest passes the environment through): PIVOT_VK_VALIDATION=1 ctest -R check_hf
set(PV_HF_FIXTURES "${CMAKE_SOURCE_DIR}/../shared/fixtures/hf")
if(NOT IS_DIRECTORY "${PV_HF_FIXTURES}")
  message(WARNING "pivot: ${PV_HF_FIXTURES} does not exist; the check_hf_* tests will fail")
endif()

foreach(F siglip siglip2_naflex qwen2_tied mllm tokenizer)
  add_test(NAME check_hf_cpu_${F}
    COMMAND $<TARGET_FILE:pivot_cli> check-hf ${PV_HF_FIXTURES}/${F} --backend cpu
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
endforeach()

foreach(F siglip siglip2_naflex qwen2_tied mllm)
  add_test(NAME check_hf_vulkan_${F}
    COMMAND $<TARGET_FILE:pivot_cli> check-hf ${PV_HF_FIXTURES}/${F} --backend vulkan
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
endforeach()

if(PIVOT_LONG_TESTS)
  # nothing more for now
endif()
