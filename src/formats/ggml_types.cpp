#include "formats/ggml_types.h"


namespace lora {

std::optional<GGMLTypeTraits> ggml_type_traits(uint32_t type) {
  // Numbering and block layouts from ggml.h / ggml-common.h; gaps are types ggml removed.
  switch (type) {
    case 0: return GGMLTypeTraits{"F32", 1, 4};
    case 1: return GGMLTypeTraits{"F16", 1, 2};
    case 2: return GGMLTypeTraits{"Q4_0", 32, 18};
    case 3: return GGMLTypeTraits{"Q4_1", 32, 20};
    case 6: return GGMLTypeTraits{"Q5_0", 32, 22};
    case 7: return GGMLTypeTraits{"Q5_1", 32, 24};
    case 8: return GGMLTypeTraits{"Q8_0", 32, 34};
    case 9: return GGMLTypeTraits{"Q8_1", 32, 36};
    case 10: return GGMLTypeTraits{"Q2_K", 256, 84};
    case 11: return GGMLTypeTraits{"Q3_K", 256, 110};
    case 12: return GGMLTypeTraits{"Q4_K", 256, 144};
    case 13: return GGMLTypeTraits{"Q5_K", 256, 176};
    case 14: return GGMLTypeTraits{"Q6_K", 256, 210};
    case 15: return GGMLTypeTraits{"Q8_K", 256, 292};
    case 16: return GGMLTypeTraits{"IQ2_XXS", 256, 66};
    case 17: return GGMLTypeTraits{"IQ2_XS", 256, 74};
    case 18: return GGMLTypeTraits{"IQ3_XXS", 256, 98};
    case 19: return GGMLTypeTraits{"IQ1_S", 256, 50};
    case 20: return GGMLTypeTraits{"IQ4_NL", 32, 18};
    case 21: return GGMLTypeTraits{"IQ3_S", 256, 110};
    case 22: return GGMLTypeTraits{"IQ2_S", 256, 82};
    case 23: return GGMLTypeTraits{"IQ4_XS", 256, 136};
    case 24: return GGMLTypeTraits{"I8", 1, 1};
    case 25: return GGMLTypeTraits{"I16", 1, 2};
    case 26: return GGMLTypeTraits{"I32", 1, 4};
    case 27: return GGMLTypeTraits{"I64", 1, 8};
    case 28: return GGMLTypeTraits{"F64", 1, 8};
    case 29: return GGMLTypeTraits{"IQ1_M", 256, 56};
    case 30: return GGMLTypeTraits{"BF16", 1, 2};
    case 34: return GGMLTypeTraits{"TQ1_0", 256, 54};
    case 35: return GGMLTypeTraits{"TQ2_0", 256, 66};
    case 39: return GGMLTypeTraits{"MXFP4", 32, 17};
    default: return std::nullopt;
  }
}

}  // namespace lora
