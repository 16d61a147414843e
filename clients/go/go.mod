module skewd

go 1.19
