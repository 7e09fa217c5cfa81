// placeholder until the CLI lands
print("sfnet")
