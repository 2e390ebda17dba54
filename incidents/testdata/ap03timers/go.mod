module example.com/ap03timers

go 1.22
