"""Signal generators: bars in, signal archive out. They import only ``framework``."""
