#include <cstdio>
int main() { std::puts("lora: skeleton"); return 0; }
