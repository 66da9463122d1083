# Embeds a text file as a NUL-terminated C string: -DIN= -DOUT= -DSYM=
file(READ ${IN} HEX HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," HEX "${HEX}")
file(WRITE ${OUT} "/* generated from ${IN} */\nconst char ${SYM}[] = {${HEX} 0x00};\n")
